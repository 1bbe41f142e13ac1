"""BatchNorm after a quantized deconv (mmpose's heatmap head) is folded into
the deconv by the integer rewrite: per-output-channel weight scales on axis 1,
no float BatchNormalization left, the same values; a grouped deconv keeps its
BatchNorm float (with the float-island warning)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmcompress.quant import quantize_model
from mmcompress.quant.export import export_onnx, optimize_for_onnxruntime

LSQ8 = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True),
    a=dict(type='LSQQuantizer', bits=8),
)


class DeconvHead(nn.Module):
    def __init__(self, groups=1):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(4, 6, 2, stride=2, groups=groups)
        self.bn = nn.BatchNorm2d(6)
        self.final = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.final(torch.relu(self.bn(self.deconv(x))))


def _model(groups=1, **quant):
    torch.manual_seed(0)
    model = quantize_model(DeconvHead(groups), **LSQ8, **quant)
    with torch.no_grad():
        model.bn.weight.copy_(torch.linspace(-1.5, 1.5, 6))  # negative factors
        model.bn.bias.copy_(torch.linspace(-0.3, 0.3, 6))
        model.bn.momentum = 1.0
        model.train()(torch.randn(8, 1, 6, 6))  # quantizers and BN statistics
    return model.eval()


def _run(blob, x, optimize):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(blob, options, providers=['CPUExecutionProvider'])
    return session.run(None, {'input': x.numpy()})[0]


def test_bn_after_a_deconv_is_folded_into_it(onnx_op_types):
    import onnx
    from onnx import numpy_helper

    model = _model()
    x = torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    qdq = export_onnx(model, x[:1])
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no float-island warning
        # the fold on the ConvTranspose itself (the default rewrites it into
        # its sub-pixel conv afterwards, test_export_deconv_subpixel.py)
        fast = optimize_for_onnxruntime(qdq, [x], integer_deconv=False)
        subpixel = optimize_for_onnxruntime(qdq, [x])
    same, kept = _run(subpixel, x, False), _run(fast, x, False)
    # the same values (a rare rounding tie may flip with the summation order)
    assert (np.abs(same - kept) > 1e-5 * np.abs(kept).max()).mean() <= 0.01
    graph = onnx.load_from_string(fast).graph
    assert 'BatchNormalization' not in [n.op_type for n in graph.node]
    assert 'BatchNormalization' not in onnx_op_types(fast)
    deconv = next(n for n in graph.node if n.op_type == 'ConvTranspose')
    wdq = next(n for n in graph.node if n.output[0] == deconv.input[1])
    assert [a.i for a in wdq.attribute if a.name == 'axis'] == [1]
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    assert inits[wdq.input[1]].shape == (6,)  # one scale per output channel
    # the folded graph computes what the QAT model computes, up to the 8-bit
    # grids the rewrite adds on the deconv output (one step of a calibrated grid)
    with torch.no_grad():
        reference = model(x).numpy()
    exact = _run(fast, x, optimize=False)
    assert np.abs(exact - reference).max() <= 0.02 * np.abs(reference).max()
    np.testing.assert_allclose(_run(fast, x, optimize=True), exact, atol=1e-5)


def test_bn_after_a_grouped_deconv_stays_float():
    import onnx

    model = _model(groups=2)
    x = torch.randn(2, 1, 6, 6)
    qdq = export_onnx(model, x[:1])
    with pytest.warns(UserWarning, match='BatchNormalization x1'):
        fast = optimize_for_onnxruntime(qdq, [x])
    ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    assert ops.count('BatchNormalization') == 1


def test_integer_bias_rounds_the_bn_shift_after_a_deconv():
    """The QAT model's integer_bias pairs the BN with the deconv (its handler
    folds BN now) and moves its output by less than the folded int32 grid."""
    plain, rounded = _model(), _model(integer_bias=True)
    x = torch.relu(torch.randn(2, 4, 6, 6))
    with torch.no_grad():
        out = rounded.deconv(x)
        diff = (rounded.bn(out) - plain.bn(out)).abs()
    scales = plain.deconv.weight_quantizer.export_qparams().scale.reshape(-1)
    step = plain.deconv.act_quantizer.export_qparams().scale
    grid = step * scales * (plain.bn.weight / (plain.bn.running_var + 1e-5).sqrt())
    assert diff.max() > 0  # rounded onto the grid
    assert (diff.amax(dim=(0, 2, 3)) <= grid.abs() / 2 + 1e-6).all()
    # a grouped deconv's BN stays float in the export: not rounded either
    plain, rounded = _model(groups=2), _model(groups=2, integer_bias=True)
    with torch.no_grad():
        out = rounded.deconv(x)  # (its own bias is on the int32 grid)
        assert torch.equal(rounded.bn(out), plain.bn(out))
