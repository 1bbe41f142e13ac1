"""The integer rewrite runs a quantized deconv as its sub-pixel integer conv
(``mmcompress/quant/export/int8_deconv.py``): the decomposition equals the
transposed convolution (float64 in PyTorch, float32 in onnxruntime), and in
the int8 graph of an mmpose heatmap head it runs as ``QLinearConv`` with the
8-bit outputs of the float ``ConvTranspose`` graph within one step."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.quant import quantize_model
from mmcompress.quant.export import export_onnx, optimize_for_onnxruntime
from mmcompress.quant.export.int8_deconv import (
    rewrite_deconvolution,
    subpixel_axis,
    subpixel_weight,
)
from mmcompress.quant.export.onnx_graph import OnnxGraph

LSQ8 = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True),
    a=dict(type='LSQQuantizer', bits=8),
)
# (kernel, stride, padding, output_padding): mmpose's heatmap head first
CONFIGS = [(4, 2, 1, 0), (2, 2, 0, 0), (3, 2, 1, 1), (3, 3, 0, 0), (5, 2, 2, 1)]


def _subpixel(x, weight, stride, axes):
    """Conv with the re-arranged kernel, DepthToSpace (DCR), crop."""
    kernel = torch.from_numpy(subpixel_weight(weight.numpy(), stride, axes))
    pads = (axes[1].pad_begin, axes[1].pad_end, axes[0].pad_begin, axes[0].pad_end)
    z = F.conv2d(F.pad(x, pads), kernel)
    n, _, h, w = z.shape
    c = z.shape[1] // stride**2
    y = z.reshape(n, stride, stride, c, h, w).permute(0, 3, 4, 1, 5, 2)
    y = y.reshape(n, c, h * stride, w * stride)
    return y[
        :,
        :,
        axes[0].crop_begin : y.shape[2] - axes[0].crop_end,
        axes[1].crop_begin : y.shape[3] - axes[1].crop_end,
    ]


@pytest.mark.parametrize('config', CONFIGS)
def test_subpixel_conv_equals_the_transposed_conv(config):
    kernel, stride, pad, extra = config
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, kernel, kernel, generator=generator, dtype=torch.float64)
    axis = subpixel_axis(kernel, stride, pad, pad, extra)
    assert axis.taps == -(-kernel // stride)
    for size in ((5, 7), (1, 1), (6, 6)):
        x = torch.randn(2, 3, *size, generator=generator, dtype=torch.float64)
        want = F.conv_transpose2d(x, weight, None, stride, pad, extra)
        got = _subpixel(x, weight, stride, [axis, axis])
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_subpixel_form_of_the_heatmap_deconv_by_hand():
    """K=4, s=2, p=1: outputs 2q and 2q+1 read inputs q-1, q and q, q+1, one
    2-tap conv on the input padded by one, cropped by one on each side."""
    axis = subpixel_axis(4, 2, 1, 1)
    assert (axis.taps, axis.pad_begin, axis.pad_end) == (2, 1, 1)
    assert (axis.crop_begin, axis.crop_end) == (1, 1)
    weight = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    kernel = subpixel_weight(weight, 2, [axis, axis])
    # phase (r_h, r_w), tap (t_h, t_w) holds deconv tap (r + 2 (1 - t))
    assert kernel[:, 0].tolist() == [
        [[10, 8], [2, 0]],
        [[11, 9], [3, 1]],
        [[14, 12], [6, 4]],
        [[15, 13], [7, 5]],
    ]
    # padding beyond the kernel would need a negative conv padding
    assert subpixel_axis(2, 2, 2, 2) is None


def _deconv_graph(weight, scale, bias, stride, pad):
    """``ConvTranspose(x, DQ(int8 weight), bias) -> Identity`` in float."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(weight, 'w'),
        numpy_helper.from_array(scale, 'w_scale'),
        numpy_helper.from_array(np.zeros_like(weight, shape=scale.shape), 'w_zp'),
        numpy_helper.from_array(bias, 'b'),
    ]
    nodes = [
        helper.make_node('DequantizeLinear', ['w', 'w_scale', 'w_zp'], ['wq'], axis=1),
        helper.make_node(
            'ConvTranspose',
            ['x', 'wq', 'b'],
            ['y0'],
            name='deconv',
            strides=[stride] * 2,
            pads=[pad] * 4,
        ),
        helper.make_node('Identity', ['y0'], ['y']),
    ]
    io = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ['n', c, f'{n}h', f'{n}w'])
        for n, c in (('x', weight.shape[0]), ('y', weight.shape[1]))
    ]
    graph = helper.make_graph(nodes, 'g', io[:1], io[1:], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])


def test_rewritten_onnx_graph_equals_the_conv_transpose_in_float():
    """The graph rewrite of the pose head's deconv (K=4, s=2, p=1, per-channel
    int8 weights, a bias) in onnxruntime, at two input sizes."""
    import onnx

    from mmcompress.quant.export import onnxruntime_session

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (6, 5, 4, 4)).astype(np.int8)
    scale = rng.uniform(0.01, 0.02, 5).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    model = _deconv_graph(weight, scale, bias, 2, 1)
    rewritten = onnx.load_from_string(model.SerializeToString())
    g = OnnxGraph(rewritten)
    deconv = next(n for n in g.graph.node if n.op_type == 'ConvTranspose')
    rewrite_deconvolution(g, deconv, g.producer('y'))
    g.topological_sort()
    ops = [n.op_type for n in g.graph.node]
    assert 'ConvTranspose' not in ops and {'Conv', 'DepthToSpace', 'Slice'} <= set(ops)
    onnx.checker.check_model(rewritten)
    reference = onnxruntime_session(model.SerializeToString())
    session = onnxruntime_session(rewritten.SerializeToString())
    for size in ((7, 5), (8, 8)):
        x = rng.normal(size=(2, 6, *size)).astype(np.float32)
        want = reference.run(None, {'x': x})[0]
        got = session.run(None, {'x': x})[0]
        assert got.shape == want.shape == (2, 5, 2 * size[0], 2 * size[1])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_no_subpixel_form_names_the_layer():
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (6, 5, 2, 2)).astype(np.int8)
    model = _deconv_graph(weight, np.ones(5, np.float32), np.zeros(5, np.float32), 2, 2)
    g = OnnxGraph(model)
    deconv = next(n for n in g.graph.node if n.op_type == 'ConvTranspose')
    with pytest.raises(ValueError, match=r'deconv: no sub-pixel form: padding'):
        rewrite_deconvolution(g, deconv, g.producer('y'))


class PoseNet(nn.Module):
    """A stem conv and mmpose's heatmap head (3 deconvs K=4, s=2, p=1 with
    BN + ReLU, a 1x1 output conv)."""

    def __init__(self):
        super().__init__()
        from mmpose.models.heads import HeatmapHead

        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.head = HeatmapHead(
            in_channels=16,
            out_channels=5,
            deconv_out_channels=(8, 8, 8),
            deconv_kernel_sizes=(4, 4, 4),
        )

    def forward(self, x):
        return self.head((F.relu(self.stem(x)),))


def _pose_model():
    torch.manual_seed(0)
    model = quantize_model(PoseNet(), **LSQ8)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 12, 10))
    return model.eval()


def _with_outputs(blob, names):
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(blob)
    model.graph.output.extend(
        helper.make_tensor_value_info(n, TensorProto.UINT8, None) for n in names
    )
    return model.SerializeToString()


def test_pose_head_deconvs_run_as_integer_convs(onnx_op_types):
    import onnx

    from mmcompress.quant.export import onnxruntime_session

    model = _pose_model()
    x = torch.randn(4, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    qdq = export_onnx(model, x[:1], dynamic_size=True)
    kept = optimize_for_onnxruntime(qdq, [x], integer_deconv=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no deconv kept float, no float island
        fast = optimize_for_onnxruntime(qdq, [x])
    graph = onnx.load_from_string(fast).graph
    ops = [n.op_type for n in graph.node]
    assert 'ConvTranspose' not in ops and ops.count('DepthToSpace') == 3
    run = onnx_op_types(fast)
    assert 'ConvTranspose' not in run
    # the backbone stem and the output conv stay float (the recipe)
    assert run.count('QLinearConv') == 3 and run.count('DepthToSpace') == 3
    assert onnx_op_types(kept).count('ConvTranspose') == 3
    # the 8-bit deconv outputs (ReLU, re-quantized) of both graphs: the
    # Slice outputs carry the names of the QuantizeLinear outputs
    names = [n.output[0] for n in graph.node if n.op_type == 'Slice']
    assert len(names) == 3
    for size in ((12, 10), (8, 8)):
        feed = {'input': torch.randn(2, 3, *size).numpy()}
        want = onnxruntime_session(_with_outputs(kept, names)).run(None, feed)
        got = onnxruntime_session(_with_outputs(fast, names)).run(None, feed)
        for a, b in zip(want[1:], got[1:]):
            assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # and the heatmaps agree with the QAT model (the int8 graph's own
    # roundings: one step of the 8-bit grids)
    with torch.no_grad():
        reference = model(x).numpy()
    out = onnxruntime_session(fast).run(None, {'input': x.numpy()})[0]
    assert np.abs(out - reference).max() <= 0.05 * np.abs(reference).max()


def test_blocks_must_follow_the_deconv():
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (6, 5, 4, 4)).astype(np.int8)
    model = _deconv_graph(weight, np.ones(5, np.float32), np.zeros(5, np.float32), 2, 1)
    g = OnnxGraph(model)
    deconv = next(n for n in g.graph.node if n.op_type == 'ConvTranspose')
    before = [n.op_type for n in g.graph.node]
    with pytest.raises(ValueError, match='wq does not follow it through'):
        rewrite_deconvolution(g, deconv, g.producer('wq'))
    assert [n.op_type for n in g.graph.node] == before  # nothing edited
