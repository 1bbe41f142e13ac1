"""PolarizedSelfAttention against hand-written official-code and paper formulas.

The references below recompute each branch from the module's weights with einsum,
in the order the official ``PSA_p`` / ``PSA_s`` (DeLightCMU/PSA, network/PSA.py)
and the paper's equations state it (e.g. the spatial query is convolved at full
resolution and then pooled), independently of the module's own code path.
"""

import math

import pytest
import torch
from mmcv.cnn import build_plugin_layer

from mmcompress.models.plugins import PolarizedSelfAttention
from mmcompress.registry import MODELS

C = 16


def conv(weight, x, bias=None):
    """1x1 convolution as an einsum over channels."""
    out = torch.einsum('oc,nchw->nohw', weight[:, :, 0, 0], x)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def layer_norm(t, ln, dims):
    """LayerNorm over the trailing ``dims`` dimensions, by hand."""
    axes = tuple(range(-dims, 0))
    mean = t.mean(dim=axes, keepdim=True)
    var = t.var(dim=axes, unbiased=False, keepdim=True)
    return (t - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_channel(m, x):
    """A_ch: official spatial_pool(); the paper adds LN_C before the sigmoid."""
    n, c, h, w = x.shape
    v = conv(m.ch_wv.weight, x).reshape(n, c // 2, h * w)
    q = torch.softmax(conv(m.ch_wq.weight, x).reshape(n, h * w), dim=1)
    z = torch.einsum('nkp,np->nk', v, q)[..., None, None]  # N, C/2, 1, 1
    if m.impl == 'official' and m.mode == 'sequential':
        up0, ln, _, up3 = m.ch_wz
        t = conv(up0.weight, z, up0.bias)
        t = torch.relu(layer_norm(t, ln, 3))
        logits = conv(up3.weight, t, up3.bias)
    else:
        logits = conv(m.ch_wz.weight, z)
        if m.impl == 'paper':
            logits = layer_norm(logits[..., 0, 0], m.ch_norm, 1)[..., None, None]
    return torch.sigmoid(logits)


def ref_spatial(m, x):
    """A_sp: official channel_pool() (p / s variants) or the paper's equation."""
    n, c, h, w = x.shape
    g = conv(m.sp_wq.weight, x).mean(dim=(2, 3))  # full-res conv, then GAP
    v = conv(m.sp_wv.weight, x).reshape(n, c // 2, h * w)
    if m.impl == 'paper':
        logits = torch.einsum('nk,nkp->np', torch.softmax(g, dim=1), v)
    elif m.mode == 'parallel':
        logits = torch.softmax(torch.einsum('nk,nkp->np', g, v), dim=1)
    else:
        logits = torch.einsum('nk,nkp->np', g, torch.softmax(v, dim=2))
    return torch.sigmoid(logits).reshape(n, 1, h, w)


def randomised(mode, impl, channels=C):
    """A PSA block with every parameter (LayerNorm affine included) random."""
    torch.manual_seed(0)
    m = PolarizedSelfAttention(channels, mode=mode, impl=impl)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return m.double()


LAYOUTS = [
    (mode, impl)
    for mode in ('parallel', 'sequential')
    for impl in ('official', 'paper')
]


@pytest.mark.parametrize('mode, impl', LAYOUTS)
def test_channel_branch_matches_reference(mode, impl):
    m = randomised(mode, impl)
    x = torch.randn(2, C, 5, 7, dtype=torch.float64)
    out = m.channel_attention(x)
    assert out.shape == (2, C, 1, 1)
    torch.testing.assert_close(out, ref_channel(m, x))


@pytest.mark.parametrize('mode, impl', LAYOUTS)
def test_spatial_branch_matches_reference(mode, impl):
    m = randomised(mode, impl)
    x = torch.randn(2, C, 5, 7, dtype=torch.float64)
    out = m.spatial_attention(x)
    assert out.shape == (2, 1, 5, 7)
    torch.testing.assert_close(out, ref_spatial(m, x))


def reference(m, x):
    """The whole block from the reference branches."""
    if m.mode == 'parallel':
        return x * ref_channel(m, x) + x * ref_spatial(m, x)
    y = x * ref_channel(m, x)
    return y * ref_spatial(m, y)


@pytest.mark.parametrize('mode, impl', LAYOUTS)
def test_composition_parallel_sum_sequential_chain(mode, impl):
    m = randomised(mode, impl)
    x = torch.randn(2, C, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference(m, x))


@pytest.mark.parametrize('mode, impl', LAYOUTS)
def test_gradients_match_the_reference(mode, impl):
    """The reordered products (pooled vectors, linear maps on 1x1 maps, the
    parallel combination) give the reference's input and weight gradients."""
    m = randomised(mode, impl)
    x = torch.randn(3, C, 5, 6, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, C, 5, 6, dtype=torch.float64)
    inputs = [x, *m.parameters()]
    got = torch.autograd.grad((m(x) * grad).sum(), inputs)
    expected = torch.autograd.grad((reference(m, x) * grad).sum(), inputs)
    names = ['x'] + [name for name, _ in m.named_parameters()]
    for name, a, b in zip(names, got, expected):
        torch.testing.assert_close(a, b, msg=name)


def test_variants_differ_where_the_official_code_deviates():
    """The official p/s branches are not the paper's: outputs must differ."""
    x = torch.randn(2, C, 5, 5, dtype=torch.float64)
    for mode in ('parallel', 'sequential'):
        official, paper = randomised(mode, 'official'), randomised(mode, 'paper')
        paper.load_state_dict(
            {
                k: v
                for k, v in official.state_dict().items()
                if k in paper.state_dict() and v.shape == paper.state_dict()[k].shape
            },
            strict=False,
        )
        assert not torch.allclose(
            official.spatial_attention(x), paper.spatial_attention(x)
        )


def test_official_layers_and_parameter_counts():
    """PSA_p: no LayerNorm, bias-free Wz; PSA_s: C/2 -> C/8 -> C with LN and bias."""
    p = PolarizedSelfAttention(64, mode='parallel')
    s = PolarizedSelfAttention(64, mode='sequential')
    paper = PolarizedSelfAttention(64, impl='paper')
    assert not any(isinstance(x, torch.nn.LayerNorm) for x in p.modules())
    assert p.ch_wz.bias is None
    qv = 64 * 1 + 64 * 32 + 64 * 32 + 64 * 32  # ch_wq, ch_wv, sp_wq, sp_wv
    assert sum(x.numel() for x in p.parameters()) == qv + 32 * 64
    assert sum(x.numel() for x in s.parameters()) == qv + (32 * 8 + 8) + 2 * 8 + (
        8 * 64 + 64
    )
    assert sum(x.numel() for x in paper.parameters()) == qv + 32 * 64 + 2 * 64


@pytest.mark.parametrize('shape', [(1, 8, 1, 1), (3, 24, 9, 4), (2, 64, 16, 16)])
@pytest.mark.parametrize('mode, impl', LAYOUTS)
def test_shape_is_preserved(shape, mode, impl):
    m = PolarizedSelfAttention(shape[1], mode=mode, impl=impl)
    assert m(torch.randn(shape)).shape == shape


@pytest.mark.parametrize('mode, impl', LAYOUTS)
def test_gradients_reach_every_parameter_and_the_input(mode, impl):
    m = randomised(mode, impl).float()
    x = torch.randn(2, C, 6, 6, requires_grad=True)
    (m(x) * torch.randn(2, C, 6, 6)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_official_kaiming_fan_in_init():
    torch.manual_seed(0)
    m = PolarizedSelfAttention(256)
    for conv_ in (m.ch_wv, m.sp_wq, m.sp_wv):  # fan_in = 256, gain sqrt(2)
        assert conv_.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.03)
    # Wz keeps torch's default conv init: uniform within 1/sqrt(fan_in)
    assert m.ch_wz.weight.abs().max().item() <= 1 / math.sqrt(128)


def test_built_as_mmcv_plugin_from_every_scope():
    name, layer = build_plugin_layer(
        dict(type='PolarizedSelfAttention', mode='sequential'), in_channels=32
    )
    assert name == 'psa' and isinstance(layer, PolarizedSelfAttention)
    assert layer.in_channels == 32 and layer.mode == 'sequential'
    assert layer.impl == 'official'
    assert MODELS.get('PolarizedSelfAttention') is PolarizedSelfAttention
    from mmengine.registry import DefaultScope

    for scope in ('mmseg', 'mmpose', 'mmdet', 'mmpretrain'):
        with DefaultScope.overwrite_default_scope(scope):
            _, built = build_plugin_layer(
                dict(type='PolarizedSelfAttention'), in_channels=8
            )
        assert isinstance(built, PolarizedSelfAttention)


def test_loading_a_plain_checkpoint_logs_the_new_psa_weights(capsys):
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import load_state_dict

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), PolarizedSelfAttention(8))
    plain = {'0.weight': torch.zeros(8, 3, 1, 1), '0.bias': torch.zeros(8)}
    MMLogger.get_instance('test_psa_load')
    load_state_dict(model, plain, strict=False)
    out = capsys.readouterr()
    text = out.out + out.err
    assert 'PolarizedSelfAttention 1: 5 tensors not in the checkpoint' in text
    assert 'ch_wq.weight' in text and 'sp_wv.weight' in text
    capsys.readouterr()
    load_state_dict(model, model.state_dict(), strict=True)  # nothing missing
    out = capsys.readouterr()
    assert 'not in the checkpoint' not in out.out + out.err
