"""The output scale of EWGS / DAQ layers folded into the quantized weight.

With a ``fused`` quantizer a layer computes ``f(Q(x), Q(W) * |s|, bias)``
instead of ``f(Q(x), Q(W)) * |s| + bias``. Tolerance of the folded path
against the product on the output (forward and every gradient), relative to
the largest magnitude of the compared tensor: 1e-12 in float64, 1e-5 in
float32 (the convolution sums its products in another rounding order). The
default (unfused) layers keep the product on the output bit for bit.
"""

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from mmcompress.quant import QuantConv2d, QuantConvTranspose2d, QuantLinear

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def _layer(kind: str, method: str, fused: bool, dtype, act: bool = True):
    torch.manual_seed(0)
    specs = [
        dict(type=f'{method}Quantizer', bits=4, role=role, fused=fused)
        for role in ('weight', 'activation')
    ]
    if kind == 'conv':
        cls, float_layer, x = QuantConv2d, nn.Conv2d(6, 5, 3, padding=1), (2, 6, 7, 7)
    elif kind == 'deconv':
        cls, float_layer = QuantConvTranspose2d, nn.ConvTranspose2d(6, 4, 2, stride=2)
        x = (2, 6, 4, 4)
    else:
        cls, float_layer, x = QuantLinear, nn.Linear(12, 7), (5, 12)
    layer = cls.from_float(
        float_layer.to(dtype),
        weight_quantizer=specs[0],
        act_quantizer=specs[1] if act else None,
    ).to(dtype)
    x = torch.randn(*x, dtype=dtype).relu()
    layer(x)  # initializes the ranges and the output scale
    layer.zero_grad()
    return layer, x


def _product_on_output(layer, x: torch.Tensor) -> torch.Tensor:
    """The layer's output as the unfused formula, with its own quantizers."""
    x_q = x if layer.act_quantizer is None else layer.act_quantizer(x)
    w_q = layer.weight_quantizer(layer.weight)
    out = layer._linear_op(x_q, w_q, None) * layer.output_scale.abs()
    return out + layer._bias_view(out)


def _output_and_grads(fn, layer, x: torch.Tensor, grad_seed: int = 1):
    layer.zero_grad()
    x = x.clone().requires_grad_()
    out = fn(x)
    grad = torch.randn(
        out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(grad_seed)
    )
    out.backward(grad)
    grads = {'x': x.grad}
    grads.update({name: p.grad.clone() for name, p in layer.named_parameters()})
    return out.detach(), grads


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = expected.abs().max().clamp_min(1e-30)
    assert float((actual - expected).abs().max() / scale) <= rel


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('method', ['EWGS', 'DAQ'])
@pytest.mark.parametrize('kind', ['conv', 'deconv', 'linear'])
def test_fused_layer_folds_output_scale_into_weight(kind, method, dtype):
    layer, x = _layer(kind, method, True, dtype)
    assert layer.folds_output_scale(x)
    out, grads = _output_and_grads(layer, layer, x)
    ref, ref_grads = _output_and_grads(lambda v: _product_on_output(layer, v), layer, x)
    _assert_close(out, ref, TOLERANCE[dtype])
    assert set(grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        assert grad is not None and float(grad.abs().max()) > 0, name
        _assert_close(grads[name], grad, TOLERANCE[dtype])
    layer.eval()
    with torch.no_grad():
        _assert_close(layer(x), _product_on_output(layer, x), TOLERANCE[dtype])


@pytest.mark.parametrize('method', ['EWGS', 'DAQ'])
def test_unfused_layer_keeps_product_on_output_bit_for_bit(method):
    layer, x = _layer('conv', method, False, torch.float32)
    assert not layer.folds_output_scale(x)
    out, grads = _output_and_grads(layer, layer, x)
    ref, ref_grads = _output_and_grads(lambda v: _product_on_output(layer, v), layer, x)
    assert torch.equal(out, ref)
    for name, grad in ref_grads.items():
        assert torch.equal(grads[name], grad), name


@pytest.mark.parametrize('method', ['EWGS', 'DAQ'])
def test_folded_output_scale_gradcheck(method):
    """Input, output-scale and bias gradients of the folded layer against
    finite differences (float64; weight-only quantization, so the layer is
    linear in these three)."""
    layer, x = _layer('conv', method, True, torch.float64, act=False)
    layer.output_scale.data.fill_(-0.7)  # |s|: the sign reaches the gradient
    with torch.no_grad():
        _assert_close(layer(x), _product_on_output(layer, x), TOLERANCE[x.dtype])

    def run(v, scale, bias):
        return functional_call(layer, {'output_scale': scale, 'bias': bias}, (v,))

    inputs = (
        x[:1, :, :4, :4].clone().requires_grad_(),
        layer.output_scale.detach().clone().requires_grad_(),
        layer.bias.detach().clone().requires_grad_(),
    )
    assert layer.folds_output_scale(x)
    assert torch.autograd.gradcheck(run, inputs)


def test_autocast_keeps_output_scale_on_output():
    layer, x = _layer('conv', 'DAQ', True, torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not layer.folds_output_scale(x)
        out = layer(x)
        ref = _product_on_output(layer, x)
    # the float32 scale multiplies the bf16 convolution output, as unfused
    assert out.dtype == ref.dtype == torch.float32
    assert torch.equal(out, ref)
    assert layer.folds_output_scale(x)
