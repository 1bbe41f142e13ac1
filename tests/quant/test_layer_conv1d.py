"""The Conv1d layer type (mmcompress/quant/layer_types/conv1d.py, the worked
example of adding a layer type): fake quantization by hand, the transform,
the exact export, onnxruntime, the BatchNorm1d fold and integer_bias."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.quant import QuantConfig, QuantConv1d, quantize_
from mmcompress.quant.export import (
    compare_with_onnxruntime,
    convert_for_export,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)

LSQ8 = dict(type='LSQQuantizer', bits=8)
LSQ8_W = dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True)


def _hand_lsq(x, step, qmin, qmax):
    return torch.clamp(torch.round(x / step), qmin, qmax) * step


def test_quant_conv1d_matches_manual_fake_quant_per_output_channel():
    torch.manual_seed(0)
    conv = nn.Conv1d(3, 4, 3, stride=2, padding=1)
    q = QuantConv1d.from_float(
        conv,
        weight_quantizer=dict(
            type='LSQQuantizer', bits=4, signed=True, per_channel=True
        ),
        act_quantizer=dict(type='LSQQuantizer', bits=4),
    )
    assert q.weight is conv.weight and q.bias is conv.bias
    assert isinstance(q, nn.Conv1d) and set(conv.state_dict()) <= set(q.state_dict())
    x = torch.rand(2, 3, 9)
    out = q(x)
    step_w = q.weight_quantizer.step.detach()
    # LSQ init: 2 mean|w| / sqrt(7) per output channel (axis 0)
    assert torch.allclose(
        step_w, 2 * conv.weight.detach().abs().mean(dim=(1, 2)) / 7**0.5
    )
    x_q = _hand_lsq(x, q.act_quantizer.step.detach(), 0, 15)
    w_q = _hand_lsq(conv.weight.detach(), step_w.view(-1, 1, 1), -8, 7)
    reference = F.conv1d(x_q, w_q, conv.bias, stride=2, padding=1)
    assert out.shape == (2, 4, 5)
    assert torch.allclose(out, reference, atol=1e-6)


class SignalNet(nn.Module):
    """A 1-d conv net (an audio / keypoint-sequence layout) on length 20."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv1d(2, 8, 3, padding=1)
        self.conv = nn.Conv1d(8, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * 20, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(x.flatten(1))


def _data():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(16, 2, 20, generator=generator) for _ in range(6)]


def test_conv1d_is_swapped_exported_and_folded_with_its_batchnorm(onnx_op_types):
    import onnx

    data = _data()
    torch.manual_seed(0)
    model = quantize_(
        SignalNet(),
        QuantConfig(w=LSQ8_W, a=LSQ8, keep_output_float=False, integer_bias=True),
        filter_fn=lambda module, name: name != 'stem',
    )
    assert type(model.stem) is nn.Conv1d  # filter_fn kept it float
    assert isinstance(model.conv, QuantConv1d)
    for batch in data[:3]:
        model(batch)
    model.eval()
    converted = convert_for_export(model, data[0])
    for batch in data:
        assert torch.allclose(converted(batch), model(batch), atol=1e-5)
    plain = export_onnx(model, data[0][:1])
    graph = onnx.load_from_string(plain).graph
    conv = next(
        n for n in graph.node if n.op_type == 'Conv' and n.input[1].startswith('/conv/')
    )
    wdq = next(n for n in graph.node if n.output[0] == conv.input[1])
    weight = onnx.numpy_helper.to_array(
        next(i for i in graph.initializer if i.name == wdq.input[0])
    )
    assert weight.dtype.name == 'int8' and weight.shape == (8, 8, 3)
    result = compare_with_onnxruntime(model, onnxruntime_session(plain), data)
    assert result['top1_agreement'] == 1.0 and result['max_abs_diff'] < 1e-4
    fast = optimize_for_onnxruntime(plain, data[:2])
    ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    assert 'BatchNormalization' not in ops  # folded into the Conv1d
    assert 'QLinearConv' in onnx_op_types(fast)
    # integer_bias put the BN shift on the int32 grid of the folded conv and
    # the flattened ReLU output is re-quantized on the fc's own input grid:
    # the integer graph computes what PyTorch computes (4e-8 measured; 3.9e-3,
    # about two logit steps, with integer_bias=False)
    result = compare_with_onnxruntime(model, onnxruntime_session(fast), data)
    assert result['top1_agreement'] == 1.0 and result['max_abs_diff'] < 1e-5
