"""Automatic and explicit adapters (mmcompress.distill.adapters)."""

import pytest
import torch
from torch import nn

from mmcompress.distill.adapters import (
    ConvBNAdapter,
    LinearAdapter,
    build_entry_adapter,
)


def test_auto_adapters_follow_the_shapes():
    adapter = build_entry_adapter(
        'auto',
        'e',
        [(2, 8, 4, 4), (2, 5), (2, 16, 8, 8), (2, 7, 6)],
        [(2, 16, 4, 4), (2, 9), (2, 16, 4, 4), (2, 7, 6)],
    )
    kinds = [type(m) for m in adapter.layers]
    assert kinds == [ConvBNAdapter, LinearAdapter, nn.Identity, nn.Identity]
    assert adapter.resize == [False, False, True, False]
    feats_S = [
        torch.randn(2, 8, 4, 4),
        torch.randn(2, 5),
        torch.randn(2, 16, 8, 8),
        torch.randn(2, 7, 6),
    ]
    feats_T = [
        torch.randn(2, 16, 4, 4),
        torch.randn(2, 9),
        torch.randn(2, 16, 4, 4),
        torch.randn(2, 7, 6),
    ]
    out = adapter(feats_S, feats_T)
    assert [o.shape for o in out] == [t.shape for t in feats_T]
    # the resize is bilinear down to the teacher's size; equal shapes pass
    torch.testing.assert_close(
        out[2],
        nn.functional.interpolate(
            feats_S[2], size=(4, 4), mode='bilinear', align_corners=False
        ),
    )
    assert out[3] is feats_S[3]


def test_channel_affine_invariant_loss_gets_a_plain_conv():
    """PKD standardises each channel: the BN of ConvBNAdapter could change
    neither its value nor its gradient, so the automatic adapter is a 1x1
    conv alone."""
    from mmcompress.distill.losses import PKDLoss

    adapter = build_entry_adapter(
        'auto', 'e', [(4, 3, 5, 5)], [(4, 6, 5, 5)], channel_affine_invariant=True
    )
    conv = adapter.layers[0]
    assert type(conv) is nn.Conv2d and conv.bias is None
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (3, 6, (1, 1))
    # the invariance: a training-mode BN with positive scales after the conv
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6).train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    x, t = torch.randn(4, 3, 5, 5), torch.randn(4, 6, 5, 5)
    plain = PKDLoss()(conv(x), t)
    with_bn = PKDLoss()(bn(conv(x)), t)
    torch.testing.assert_close(plain, with_bn, rtol=1e-4, atol=1e-6)
    (grad_plain,) = torch.autograd.grad(plain, conv.weight)
    (grad_bn,) = torch.autograd.grad(with_bn, conv.weight)
    torch.testing.assert_close(grad_plain, grad_bn, rtol=1e-3, atol=1e-6)
    assert PKDLoss.channel_affine_invariant


def test_equal_shapes_give_an_identity():
    adapter = build_entry_adapter('auto', 'e', [(2, 10)], [(2, 10)])
    assert adapter.is_identity


def test_no_adapter_and_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"adapter=None.*adapter='auto'"):
        build_entry_adapter(None, 'hint', [(2, 8, 4, 4)], [(2, 16, 4, 4)])
    assert build_entry_adapter(None, 'hint', [(2, 8, 4, 4)], [(3, 8, 4, 4)]).is_identity


def test_explicit_adapter_gets_sizes_from_shapes():
    adapter = build_entry_adapter(
        dict(type='ConvBNAdapter'), 'e', [(2, 8, 4, 4)], [(2, 8, 4, 4)]
    )
    layer = adapter.layers[0]
    assert isinstance(layer, ConvBNAdapter)  # forced even for equal shapes
    assert (layer.conv.in_channels, layer.conv.out_channels) == (8, 8)
    adapter = build_entry_adapter(
        dict(type='LinearAdapter', out_features=3), 'e', [(2, 4)], [(2, 3)]
    )
    assert (adapter.layers[0].in_features, adapter.layers[0].out_features) == (4, 3)


def test_impossible_shapes_are_clear_errors():
    with pytest.raises(ValueError, match='no automatic adapter'):
        build_entry_adapter('auto', 'e', [(2, 8, 4, 4)], [(2, 49, 8)])
    with pytest.raises(ValueError, match='counts must match'):
        build_entry_adapter('auto', 'e', [(2, 8)], [(2, 8), (2, 8)])
    with pytest.raises(ValueError, match='is invalid'):
        build_entry_adapter('conv', 'e', [(2, 8)], [(2, 8)])


def _collect_logs(monkeypatch):
    logs = []
    monkeypatch.setattr(
        'mmcompress.distill.adapters.print_log',
        lambda msg, **kwargs: logs.append((msg, kwargs)),
    )
    return logs


def test_probability_losses_only_resize_dense_logits(monkeypatch):
    """A loss comparing class distributions gets no learned adapter: equal
    class counts pass (spatial size resized), other counts or kinds fail."""
    logs = _collect_logs(monkeypatch)
    adapter = build_entry_adapter(
        'auto',
        'seg_kd',
        [(2, 5, 8, 8), (2, 10)],
        [(2, 5, 4, 4), (2, 10)],
        compares_class_distributions=True,
        loss_name='VanillaKDLoss',
    )
    assert [type(m) for m in adapter.layers] == [nn.Identity, nn.Identity]
    assert adapter.resize == [True, False]
    assert len(logs) == 1
    assert logs[0][0] == (
        "Distill entry 'seg_kd' tensor 0: adapter resize to the teacher's "
        '(H, W) maps student (N, 5, 8, 8) to teacher (N, 5, 4, 4).'
    )
    with pytest.raises(ValueError, match=r'10 vs 20 classes'):
        build_entry_adapter(
            'auto', 'kd', [(2, 10)], [(2, 20)], compares_class_distributions=True
        )
    with pytest.raises(ValueError, match='tensors of different kinds'):
        build_entry_adapter(
            'auto', 'kd', [(2, 10)], [(2, 10, 7, 7)], compares_class_distributions=True
        )
    with pytest.raises(ValueError, match=r'only the spatial size'):
        build_entry_adapter(
            'auto', 'kd', [(2, 10, 3)], [(2, 10, 5)], compares_class_distributions=True
        )
    # an explicit adapter is the user's choice and is built
    adapter = build_entry_adapter(
        dict(type='LinearAdapter'),
        'kd',
        [(2, 10)],
        [(2, 20)],
        compares_class_distributions=True,
    )
    assert (adapter.layers[0].in_features, adapter.layers[0].out_features) == (10, 20)


def test_every_adapter_built_is_logged_with_its_shapes(monkeypatch):
    logs = _collect_logs(monkeypatch)
    build_entry_adapter(
        'auto', 'hint', [(2, 8, 4, 4), (2, 5), (2, 7)], [(2, 16, 4, 4), (2, 9), (2, 7)]
    )
    assert [msg for msg, _ in logs] == [
        "Distill entry 'hint' tensor 0: adapter ConvBNAdapter maps student "
        '(N, 8, 4, 4) to teacher (N, 16, 4, 4).',
        "Distill entry 'hint' tensor 1: adapter LinearAdapter maps student "
        '(N, 5) to teacher (N, 9).',
    ]
    assert all(kwargs == dict(logger='current') for _, kwargs in logs)


def test_logit_losses_are_marked_as_comparing_class_distributions():
    from mmcompress.distill import losses

    marked = {
        name
        for name in losses.__all__
        if getattr(getattr(losses, name), 'compares_class_distributions', False)
    }
    assert {'VanillaKDLoss', 'DecoupledKDLoss', 'DISTLoss'} <= marked
    # feature losses may be bridged by adapters
    assert not marked & {
        'FeatureMSELoss',
        'ATLoss',
        'PKDLoss',
        'MGDLoss',
        'ICKDLoss',
        'ChannelWiseDivergenceLoss',
    }
