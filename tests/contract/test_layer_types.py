"""Contract of every registered quantized layer type (mmcompress.quant.handlers):
the transform swaps the float layer and keeps its parameter names, the export
form computes what the quantized layer computes, the ONNX graph holds the
handler's op with int8 weights, onnxruntime agrees with PyTorch, and the
integer graph runs the layer as a QLinear op where the handler says it does.

``CASES`` must hold one entry per registered handler:
``test_every_registered_layer_type_has_a_case`` fails for a new layer type
without one.
"""

import onnx
import pytest
import torch
import torch.nn as nn
from onnx import numpy_helper

from mmcompress.quant import QuantConfig, quantize_
from mmcompress.quant.export import (
    compare_with_onnxruntime,
    convert_for_export,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)
from mmcompress.quant.handlers import quant_handlers

W8 = dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True)
A8 = dict(type='LSQQuantizer', bits=8)


class Wrap(nn.Module):
    """``pre`` (float, makes the input of the layer under test non-trivial),
    the layer under test, a ReLU and a float read-out."""

    def __init__(self, layer: nn.Module, pre: nn.Module, post: nn.Module) -> None:
        super().__init__()
        self.pre, self.layer, self.post = pre, layer, post

    def forward(self, x):
        return self.post(torch.relu(self.layer(self.pre(x))).flatten(1))


# handler name -> (model builder, input shape, the layer's input rank)
CASES = {
    'Conv2d': (
        lambda: Wrap(
            nn.Conv2d(3, 6, 3, padding=1), nn.Identity(), nn.Linear(6 * 36, 5)
        ),
        (8, 3, 6, 6),
        4,
    ),
    'ConvTranspose2d': (
        lambda: Wrap(
            nn.ConvTranspose2d(3, 4, 2, stride=2), nn.Identity(), nn.Linear(4 * 64, 5)
        ),
        (8, 3, 4, 4),
        4,
    ),
    'Linear': (
        lambda: Wrap(nn.Linear(12, 7), nn.Flatten(1), nn.Linear(7, 5)),
        (8, 3, 2, 2),
        2,
    ),
    'Conv1d': (
        lambda: Wrap(
            nn.Conv1d(3, 6, 3, padding=1), nn.Identity(), nn.Linear(6 * 10, 5)
        ),
        (8, 3, 10),
        3,
    ),
}
# ONNX op of an exported layer -> the integer kernel onnxruntime fuses its QDQ
# pattern into, or None where onnxruntime has none (the op then runs in float
# between QuantizeLinear and DequantizeLinear)
ONNXRUNTIME_INTEGER_KERNEL = {
    'Conv': 'QLinearConv',
    'Gemm': 'QGemm',
    'ConvTranspose': 'QLinearConv',  # its sub-pixel conv (quant/export/int8_deconv.py)
}
HANDLERS = {handler.name: handler for handler in quant_handlers()}
NAMES = sorted(CASES)


def test_every_registered_layer_type_has_a_case():
    missing = sorted(set(HANDLERS) - set(CASES))
    stale = sorted(set(CASES) - set(HANDLERS))
    assert not missing, f'registered layer types without a contract case: {missing}'
    assert not stale, f'cases for layer types that are not registered: {stale}'


def _batches(shape, count=4):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=generator) for _ in range(count)]


def _quantized(name):
    build, shape, _ = CASES[name]
    torch.manual_seed(0)
    model = build()
    float_keys = set(model.state_dict())
    quantized = quantize_(
        model,
        QuantConfig(w=W8, a=A8, keep_first_float=False, keep_output_float=False),
        filter_fn=lambda module, path: path == 'layer',
    )
    data = _batches(shape)
    quantized.train()
    for batch in data[:2]:
        quantized(batch)  # initialises the quantizers
    return quantized.eval(), float_keys, data


@pytest.mark.parametrize('name', NAMES)
def test_transform_swaps_exactly_the_layer_and_keeps_parameter_names(name):
    handler = HANDLERS[name]
    model, float_keys, data = _quantized(name)
    assert type(model.layer) is handler.quant_type
    assert isinstance(model.layer, handler.float_types[0])
    assert float_keys <= set(model.state_dict())
    # the float layers around it stay float
    assert not any(isinstance(m, handler.quant_type) for m in model.post.modules())
    out = model(data[2])
    assert out.shape == (data[2].shape[0], 5) and torch.isfinite(out).all()


@pytest.mark.parametrize('name', NAMES)
def test_export_form_onnx_and_onnxruntime_agree_with_the_quantized_layer(name):
    handler = HANDLERS[name]
    model, _, data = _quantized(name)
    converted = convert_for_export(model, data[0])
    assert isinstance(converted.layer, handler.export_type)
    for batch in data:
        assert torch.allclose(converted(batch), model(batch), atol=1e-5)
    blob = export_onnx(model, data[0][:1])
    graph = onnx.load_from_string(blob).graph
    node = next(
        n
        for n in graph.node
        if n.op_type in handler.onnx_ops and n.input[1].startswith('/layer/')
    )
    # the weight reaches the op through a DequantizeLinear of int8 values
    dequant = next(n for n in graph.node if n.output[0] == node.input[1])
    weight = next(i for i in graph.initializer if i.name == dequant.input[0])
    assert numpy_helper.to_array(weight).dtype.name == 'int8'
    result = compare_with_onnxruntime(model, onnxruntime_session(blob), data)
    assert result['top1_agreement'] == 1.0 and result['max_abs_diff'] < 1e-4


@pytest.mark.parametrize('name', NAMES)
def test_integer_graph_runs_the_layer_as_a_qlinear_op_where_declared(
    name, onnx_op_types
):
    handler = HANDLERS[name]
    model, _, data = _quantized(name)
    _, _, input_rank = CASES[name]
    fast = optimize_for_onnxruntime(export_onnx(model, data[0][:1]), data[:2])
    ops = onnx_op_types(fast)
    for op in handler.onnx_ops:
        assert op in ONNXRUNTIME_INTEGER_KERNEL, (
            f'{name}: add its ONNX op {op!r} to ONNXRUNTIME_INTEGER_KERNEL'
        )
        kernel = ONNXRUNTIME_INTEGER_KERNEL[op]
        if kernel and handler.integer_op(input_rank):
            assert kernel in ops, (name, ops)
        else:  # float op between QuantizeLinear / DequantizeLinear
            assert op in ops and 'DequantizeLinear' in ops, (name, ops)
    # integer kernels requantize the output: a few output steps apart
    # (measured max 0.013 on these cases), same top-1
    result = compare_with_onnxruntime(model, onnxruntime_session(fast), data)
    assert result['top1_agreement'] >= 0.9 and result['max_abs_diff'] < 0.05
