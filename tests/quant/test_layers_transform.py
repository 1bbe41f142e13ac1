"""Quantized layers keep parameter names; float checkpoints load; transform rules."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.runner import load_checkpoint

from mmcompress.quant import (
    QuantConv2d,
    QuantConvTranspose2d,
    QuantLinear,
    eligible_layers,
    quantize_model,
)

LSQ4 = dict(type='LSQQuantizer', bits=4)
EWGS_W = dict(type='EWGSQuantizer', bits=4, role='weight')
EWGS_A = dict(type='EWGSQuantizer', bits=4, role='activation')


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.layer1 = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1, bias=False)
        )

    def forward(self, x):
        return self.layer1(F.relu(self.conv1(x)))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(F.relu(self.pre(x)))


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head = Head()

    def forward(self, x):
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def test_layers_keep_float_parameter_names_and_objects():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, groups=1)
    q = QuantConv2d.from_float(conv, weight_quantizer=LSQ4, act_quantizer=LSQ4)
    assert isinstance(q, nn.Conv2d)
    assert q.weight is conv.weight and q.bias is conv.bias
    assert (q.stride, q.padding) == ((2, 2), (1, 1))
    float_keys = set(conv.state_dict())
    assert float_keys == {'weight', 'bias'}
    assert float_keys <= set(q.state_dict())
    linear = nn.Linear(4, 2, bias=False)
    ql = QuantLinear.from_float(linear, weight_quantizer=LSQ4)
    assert ql.weight is linear.weight and ql.bias is None
    assert ql.act_quantizer is None and ql.grad_quantizer is None


def test_quant_conv_matches_manual_fake_quant():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3)
    q = QuantConv2d.from_float(
        conv, weight_quantizer=dict(LSQ4, per_channel=True), act_quantizer=LSQ4
    )
    x = torch.rand(2, 2, 6, 6)
    out = q(x)
    s_a = q.act_quantizer.step.detach()
    s_w = q.weight_quantizer.step.detach().view(-1, 1, 1, 1)
    x_q = torch.clamp(torch.round(x / s_a), 0, 15) * s_a
    w_q = torch.clamp(torch.round(conv.weight.detach() / s_w), -8, 7) * s_w
    assert torch.allclose(out, F.conv2d(x_q, w_q, conv.bias), atol=1e-6)


def test_output_scale_initialized_from_first_batch():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, bias=False)
    q = QuantConv2d.from_float(conv, weight_quantizer=EWGS_W, act_quantizer=EWGS_A)
    x = torch.rand(4, 2, 6, 6)
    out = q(x)
    x_q = q.act_quantizer(x)
    w_q = q.weight_quantizer(conv.weight)
    ref = F.conv2d(x, conv.weight).abs().mean()
    quant = F.conv2d(x_q, w_q).abs().mean()
    assert torch.allclose(q.output_scale.detach(), (ref / quant).reshape(1))
    assert torch.allclose(out.abs().mean(), ref, rtol=1e-5)
    assert q.output_scale_initialized.item() == 1


def test_float_checkpoint_loads_and_init_happens_after_loading(tmp_path):
    torch.manual_seed(0)
    float_model = TinyClassifier()
    path = tmp_path / 'float.pth'
    torch.save({'state_dict': float_model.state_dict()}, path)

    torch.manual_seed(1)
    qmodel = quantize_model(TinyClassifier(), w=LSQ4, a=LSQ4)
    load_checkpoint(qmodel, str(path), strict=False)
    layer = qmodel.backbone.layer1[0]
    assert isinstance(layer, QuantConv2d)
    assert torch.equal(layer.weight, float_model.backbone.layer1[0].weight)
    assert layer.weight_quantizer.initialized.item() == 0
    x = torch.rand(2, 1, 8, 8)
    qmodel(x)
    expected = 2 * float_model.backbone.layer1[0].weight.abs().mean() / 7**0.5
    assert torch.allclose(layer.weight_quantizer.step.detach(), expected.reshape(1))


def test_qat_checkpoint_round_trip_keeps_quantizer_state(tmp_path):
    torch.manual_seed(0)
    model = quantize_model(TinyClassifier(), w=EWGS_W, a=EWGS_A)
    x = torch.rand(2, 1, 8, 8)
    model(x)
    model.backbone.layer1[0].weight_quantizer.delta.fill_(0.25)
    model.eval()
    reference = model(x)
    path = tmp_path / 'qat.pth'
    torch.save({'state_dict': model.state_dict()}, path)

    fresh = quantize_model(TinyClassifier(), w=EWGS_W, a=EWGS_A).eval()
    load_checkpoint(fresh, str(path), strict=True)
    assert fresh.backbone.layer1[0].weight_quantizer.delta.item() == 0.25
    assert torch.equal(fresh(x), reference)
    assert fresh.backbone.layer1[0].act_quantizer.initialized.item() == 1


def test_default_rule_keeps_first_conv_and_output_layer_float():
    model = quantize_model(TinyClassifier(), w=LSQ4, a=LSQ4)
    assert type(model.backbone.conv1) is nn.Conv2d
    assert type(model.head.fc) is nn.Linear
    assert isinstance(model.head.pre, QuantLinear)
    assert isinstance(model.backbone.layer1[2], QuantConv2d)
    everything = quantize_model(
        TinyClassifier(), w=LSQ4, keep_first_float=False, keep_output_float=False
    )
    quantized = [
        n
        for n, m in everything.named_modules()
        if isinstance(m, (QuantConv2d, QuantLinear))
    ]
    assert quantized == list(eligible_layers(TinyClassifier()))
    assert len(quantized) == 5 and eligible_layers(everything) == {}


def test_output_fallback_is_last_layer_when_no_pattern_matches():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.Conv2d(2, 2, 3),
        nn.Conv2d(2, 2, 3),
        nn.Flatten(),
        nn.Linear(2, 2),
    )
    quantize_model(model, w=LSQ4)
    assert [type(m).__name__ for m in model] == [
        'Conv2d',
        'QuantConv2d',
        'QuantConv2d',
        'Flatten',
        'Linear',
    ]


def test_include_exclude_regex_and_overrides():
    model = quantize_model(
        TinyClassifier(),
        w=LSQ4,
        a=LSQ4,
        include=['backbone.*', 'head.pre'],
        exclude=['re:backbone\\.layer1\\.2'],
        layer_overrides={
            'backbone.layer1.0': dict(w=dict(bits=2, per_channel=True), a=None),
            'head.pre': dict(
                w=dict(type='UniformSTEQuantizer', bits=8, observer='current')
            ),
        },
    )
    first = model.backbone.layer1[0]
    assert first.weight_quantizer.bits == 2 and first.weight_quantizer.per_channel
    assert first.act_quantizer is None
    assert type(model.backbone.layer1[2]) is nn.Conv2d
    assert type(model.head.pre.weight_quantizer).__name__ == 'UniformSTEQuantizer'
    assert model.head.pre.act_quantizer.bits == 4


def test_transform_skips_layers_with_their_own_forward():
    attn = nn.MultiheadAttention(8, 2)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    model.add_module('attn', attn)
    names = eligible_layers(model)
    assert 'attn.out_proj' not in names
    assert list(names) == ['0', '1', '2']


def test_quantized_model_trains():
    torch.manual_seed(0)
    model = quantize_model(TinyClassifier(), w=LSQ4, a=LSQ4)
    y = torch.arange(16) % 3
    x = (torch.rand(16, 1, 8, 8) + y.view(-1, 1, 1, 1).float()) / 3
    model(x)
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert loss.item() < 0.7 * first
    assert model.backbone.layer1[0].weight_quantizer.step.grad is not None


def test_eval_forward_before_init_is_float_and_does_not_initialize():
    torch.manual_seed(0)
    float_model = TinyClassifier().eval()
    qmodel = quantize_model(TinyClassifier(), w=EWGS_W, a=EWGS_A).eval()
    qmodel.load_state_dict(float_model.state_dict(), strict=False)
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(qmodel(x), float_model(x))
    layer = qmodel.backbone.layer1[0]
    assert layer.act_quantizer.initialized.item() == 0
    assert layer.output_scale_initialized.item() == 0
    for module in qmodel.modules():
        if hasattr(module, 'calibrating'):
            module.calibrating = True
    out = qmodel(x)
    assert layer.act_quantizer.initialized.item() == 1
    assert layer.output_scale_initialized.item() == 1
    assert not torch.allclose(out, float_model(x))


def _hand_lsq(x, step, qmin, qmax):
    return torch.clamp(torch.round(x / step), qmin, qmax) * step


def test_quant_conv_transpose_matches_manual_fake_quant_per_output_channel():
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, output_padding=1)
    q = QuantConvTranspose2d.from_float(
        deconv,
        weight_quantizer=dict(LSQ4, per_channel=True, signed=True),
        act_quantizer=LSQ4,
    )
    assert q.weight is deconv.weight and q.bias is deconv.bias
    assert (q.stride, q.padding, q.output_padding) == ((2, 2), (1, 1), (1, 1))
    assert isinstance(q, nn.ConvTranspose2d)
    assert set(deconv.state_dict()) <= set(q.state_dict())
    x = torch.rand(2, 4, 5, 5)
    out = q(x)
    # the weight (in=4, out=6, kh, kw) has one step per output channel (axis 1)
    step_w = q.weight_quantizer.step.detach()
    assert step_w.shape == (6,)
    expected_steps = 2 * deconv.weight.detach().abs().mean(dim=(0, 2, 3)) / 7**0.5
    assert torch.allclose(step_w, expected_steps)
    x_q = _hand_lsq(x, q.act_quantizer.step.detach(), 0, 15)
    w_q = _hand_lsq(deconv.weight.detach(), step_w.view(1, -1, 1, 1), -8, 7)
    reference = F.conv_transpose2d(
        x_q, w_q, deconv.bias, stride=2, padding=1, output_padding=1
    )
    assert out.shape == (2, 6, 11, 11)
    assert torch.allclose(out, reference, atol=1e-5)
    # output_size picks the output padding as nn.ConvTranspose2d does
    q.eval()
    assert q(x, output_size=[10, 10]).shape == (2, 6, 10, 10)
    assert torch.allclose(
        q(x, output_size=[10, 10]),
        F.conv_transpose2d(x_q, w_q, deconv.bias, stride=2, padding=1),
        atol=1e-5,
    )


def test_quant_conv_transpose_gradients_reach_quantizers_as_lsq_formula():
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(3, 4, 3, stride=2, groups=1)
    q = QuantConvTranspose2d.from_float(
        deconv,
        weight_quantizer=dict(LSQ4, per_channel=True, signed=True),
        act_quantizer=LSQ4,
    )
    x = torch.rand(2, 3, 4, 4)
    q(x)  # initializes the steps
    target = torch.randn(2, 4, 9, 9)
    ((q(x) - target) ** 2).sum().backward()
    step = q.weight_quantizer.step.detach().view(1, -1, 1, 1)
    weight = deconv.weight.detach()
    # reference: dL/dw_q by autograd on the float op, then LSQ's step gradient
    w_q = _hand_lsq(weight, step, -8, 7).requires_grad_()
    x_q = _hand_lsq(x, q.act_quantizer.step.detach(), 0, 15)
    (
        (F.conv_transpose2d(x_q, w_q, deconv.bias, stride=2) - target) ** 2
    ).sum().backward()
    v = weight / step
    local = torch.where(
        v <= -8,
        torch.full_like(v, -8.0),
        torch.where(v >= 7, torch.full_like(v, 7.0), torch.round(v) - v),
    )
    grad_scale = 1 / (weight.numel() / 4 * 7) ** 0.5
    expected = (w_q.grad * local).sum(dim=(0, 2, 3)) * grad_scale
    assert torch.allclose(q.weight_quantizer.step.grad, expected, rtol=1e-4, atol=1e-6)
    inside = ((v > -8) & (v < 7)).float()
    assert torch.allclose(deconv.weight.grad, w_q.grad * inside, atol=1e-5)
    assert q.act_quantizer.step.grad is not None
    assert float(q.act_quantizer.step.grad.abs()) > 0


def test_quant_conv_transpose_grouped_and_output_scale():
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2, bias=False)
    q = QuantConvTranspose2d.from_float(
        deconv, weight_quantizer=EWGS_W, act_quantizer=EWGS_A
    )
    x = torch.rand(3, 4, 3, 3)
    out = q(x)
    ref = F.conv_transpose2d(x, deconv.weight, stride=2, groups=2).abs().mean()
    assert torch.allclose(out.abs().mean(), ref, rtol=1e-5)
    per_channel = QuantConvTranspose2d.from_float(
        deconv, weight_quantizer=dict(LSQ4, per_channel=True)
    )
    per_channel(x)
    # out / groups = 3 weight channels along axis 1, shared by the 2 groups
    assert per_channel.weight_quantizer.step.shape == (3,)


def test_transform_swaps_deconvs_with_include_exclude():
    from mmcv.cnn import build_upsample_layer

    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ConvTranspose2d(4, 4, 2, stride=2),
        build_upsample_layer(
            dict(type='deconv', in_channels=4, out_channels=4, kernel_size=2, stride=2)
        ),
        nn.Conv2d(4, 2, 1),
    )
    names = eligible_layers(model)
    assert list(names) == ['0', '1', '2', '3']
    quantize_model(model, w=LSQ4, a=LSQ4)
    assert isinstance(model[1], QuantConvTranspose2d)
    assert isinstance(model[2], QuantConvTranspose2d)
    assert type(model[3]) is nn.Conv2d  # last layer = output layer
    kept = quantize_model(
        nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.ConvTranspose2d(4, 4, 2),
            nn.ConvTranspose2d(4, 4, 2),
            nn.Conv2d(4, 2, 1),
        ),
        w=LSQ4,
        exclude=['2'],
    )
    assert isinstance(kept[1], QuantConvTranspose2d)
    assert type(kept[2]) is nn.ConvTranspose2d
    out = model(torch.rand(2, 1, 6, 6))
    assert out.shape == (2, 2, 16, 16)


def test_n2uq_weight_scale_is_per_output_channel_of_a_deconv():
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(3, 5, 2)
    q = QuantConvTranspose2d.from_float(
        deconv, weight_quantizer=dict(type='N2UQWeightQuantizer', bits=2)
    )
    w_q = q.weight_quantizer(deconv.weight).detach()
    # 2 bits: levels {-1, -1/3, 1/3, 1} * sf, sf = 1.5 * mean|W| per channel
    sf = 1.5 * deconv.weight.detach().abs().mean(dim=(0, 2, 3))
    levels = w_q / sf.view(1, -1, 1, 1)
    codes = torch.round(levels * 3)
    assert torch.allclose(levels * 3, codes, atol=1e-4)
    assert set(codes.unique().tolist()) <= {-3.0, -1.0, 1.0, 3.0}
    # per input channel instead (axis 0) would give other levels
    sf_in = 1.5 * deconv.weight.detach().abs().mean(dim=(1, 2, 3))
    assert not torch.allclose(w_q / sf_in.view(-1, 1, 1, 1) * 3, codes, atol=1e-2)


def test_layer_type_registry_is_consistent_and_refuses_clashes():
    from mmcompress.quant import QuantLayerHandler, quant_handlers, register_quant_layer
    from mmcompress.quant.export import ExportLayerMixin
    from mmcompress.quant.layers import QuantLayerMixin

    handlers = quant_handlers()
    assert [h.name for h in handlers][:4] == [
        'Conv2d',
        'ConvTranspose2d',
        'Linear',
        'Conv1d',
    ]
    for handler in handlers:
        # the quantized layer is a float layer (isinstance checks, state dict)
        assert issubclass(handler.quant_type, QuantLayerMixin)
        assert issubclass(handler.quant_type, handler.float_types[0])
        assert all(issubclass(t, handler.float_types[0]) for t in handler.float_types)
        assert issubclass(handler.export_type, ExportLayerMixin)
        assert handler.onnx_ops
    linear = next(h for h in handlers if h.name == 'Linear')
    assert linear.integer_op(2) and not linear.integer_op(3)
    with pytest.raises(
        ValueError,
        match=r'QuantConv2d: float type\(s\) '
        r"\['Conv2d'\] already handled by QuantConv2d",
    ):
        register_quant_layer(
            QuantLayerHandler(
                float_types=(nn.Conv2d,),
                quant_type=QuantConv2d,
                export_type=handlers[0].export_type,
                onnx_ops=('Conv',),
            )
        )
    assert quant_handlers() == handlers
