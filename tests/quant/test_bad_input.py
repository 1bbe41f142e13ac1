"""Bad input: clear errors or defined behaviour, for quantizers and the transform."""

import inspect
import math

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import (
    DAQQuantizer,
    EWGSQuantizer,
    LSQQuantizer,
    N2UQActQuantizer,
    N2UQWeightQuantizer,
    QuantConv2d,
    UniformSTEQuantizer,
    quantize_model,
)

# the multi-bit quantizers (the binary ones take channels, not bits: their bad
# input is in tests/contract/test_quantizers.py)
ALL = [
    lambda b: LSQQuantizer(b),
    lambda b: UniformSTEQuantizer(b),
    lambda b: EWGSQuantizer(b, role='activation'),
    lambda b: DAQQuantizer(b, role='activation'),
    lambda b: N2UQActQuantizer(b),
    lambda b: N2UQWeightQuantizer(b),
]


def test_all_covers_every_registered_multi_bit_quantizer():
    from tests.contract.registered import registered_quantizers

    multi_bit = {
        name
        for name, cls in registered_quantizers().items()
        # bits without a default (the binary ones default to 1)
        if inspect.signature(cls).parameters['bits'].default is inspect.Parameter.empty
    }
    assert {type(make(4)).__name__ for make in ALL} == multi_bit


@pytest.mark.parametrize('bits', [0, 9, -1, 32])
def test_bits_out_of_range_raise_with_valid_range(bits):
    for make in ALL:
        with pytest.raises(ValueError, match=r'bits=.* valid bit-widths are'):
            make(bits)


def test_one_bit_only_where_supported():
    with pytest.raises(ValueError, match='valid bit-widths are 2..8'):
        LSQQuantizer(1)
    assert EWGSQuantizer(1, role='weight').bits == 1
    assert DAQQuantizer(1, role='weight').bits == 1


@pytest.mark.parametrize('bits', [4.0, '4', True, None])
def test_bits_wrong_type(bits):
    with pytest.raises(TypeError, match='bits must be an int'):
        LSQQuantizer(bits)


def test_bad_method_arguments():
    with pytest.raises(ValueError, match='role must be one of'):
        EWGSQuantizer(4, role='input')
    with pytest.raises(ValueError, match='delta must be >= 0'):
        EWGSQuantizer(4, role='weight', delta=-1.0)
    with pytest.raises(ValueError, match='per_channel=True needs num_channels'):
        LSQQuantizer(4, per_channel=True)
    with pytest.raises(ValueError, match='observer must be'):
        UniformSTEQuantizer(4, observer='max')
    with pytest.raises(ValueError, match='temperature must be'):
        DAQQuantizer(4, role='weight', temperature=0)


@pytest.mark.parametrize(
    'make', [m for m in ALL if m(4).requires_init and not m(4).initialized.item()]
)
def test_nan_or_inf_at_initialization_raises(make):
    quantizer = make(4)
    bad = torch.tensor([0.5, float('nan'), 1.0])
    with pytest.raises(ValueError, match='NaN or inf'):
        quantizer(bad)
    assert quantizer.initialized.item() == 0
    with pytest.raises(ValueError, match='NaN or inf'):
        quantizer(torch.tensor([0.5, float('inf')]))


WITH_WEIGHTS = ALL + [
    lambda b: UniformSTEQuantizer(b, observer='current'),
    lambda b: EWGSQuantizer(b, role='weight'),
    lambda b: DAQQuantizer(b, role='weight'),
    lambda b: LSQQuantizer(b, per_channel=True, num_channels=2),
]


@pytest.mark.parametrize('make', WITH_WEIGHTS)
def test_after_init_nan_stays_elementwise_and_inf_saturates(make):
    quantizer = make(3)
    data = torch.rand(2, 32) * 2 - 0.5
    quantizer(data)
    bad = torch.tensor(
        [[math.nan, math.inf, 1e30, 0.7], [-math.inf, -1e30, 0.3, 1.1]],
        requires_grad=True,
    )
    out = quantizer(bad)
    assert math.isnan(out[0, 0].item())
    assert torch.isfinite(out[:, 1:]).all() and torch.isfinite(out[1]).all()
    # +inf gives the top level, -inf the bottom one (1e30 may set the range
    # of the quantizers that take it from the tensor itself)
    assert out[0, 1].item() >= out[0, 2].item() >= out[:, 3].max().item()
    assert out[1, 0].item() <= out[1, 1].item() <= out[1, 2:].min().item()


@pytest.mark.parametrize('make', WITH_WEIGHTS)
def test_gradients_stay_finite_after_inf_input(make):
    quantizer = make(3)
    quantizer(torch.rand(2, 32) * 2 - 0.5)
    bad = torch.tensor(
        [[math.inf, 1e38, 0.7, 0.2], [-math.inf, -1e38, 0.3, 1.1]], requires_grad=True
    )
    quantizer(bad).sum().backward()
    assert torch.isfinite(bad.grad).all()
    assert bad.grad[:, 0].eq(0).all()  # saturated elements get no gradient
    for name, param in quantizer.named_parameters():
        assert param.grad is None or torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize('make', [m for m in ALL if m(4).requires_init])
def test_init_from_values_near_float32_limit(make):
    quantizer = make(4)
    # the float32 sum (inside the means) overflows; the statistics do not
    x = torch.tensor([1e38, 5e37, 8e37, 1e37, 3e37, 6e37, 9e37, 7e37])
    assert not math.isfinite(x.sum().item())
    out = quantizer(x)
    assert quantizer.initialized.item() == 1
    assert torch.isfinite(out).all()
    for name, param in quantizer.named_parameters():
        assert torch.isfinite(param).all(), name


def test_tiny_weights_keep_their_relative_precision():
    torch.manual_seed(0)
    w = torch.randn(4, 9)
    n2uq = N2UQWeightQuantizer(2)
    assert torch.allclose(n2uq(w * 1e-40), n2uq(w) * 1e-40, rtol=1e-3, atol=1e-44)
    daq = DAQQuantizer(2, role='weight')
    assert torch.equal(daq(w * 1e-40), daq(w))


def test_ewgs_weight_init_on_constant_and_zero_filters():
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    with torch.no_grad():
        w[1] = 0.0
        w[2] = 0.25
    quantizer = EWGSQuantizer(2, role='weight', per_channel=True, num_channels=3)
    out = quantizer(w)
    assert (quantizer.upper - quantizer.lower).min().item() == pytest.approx(1e-6)
    assert torch.isfinite(out).all()
    assert out[2].eq(1).all()  # a constant positive filter: the top level
    out.sum().backward()
    assert torch.isfinite(w.grad).all()
    assert torch.isfinite(quantizer.lower.grad).all()
    assert torch.isfinite(quantizer.upper.grad).all()


@pytest.mark.parametrize('make', ALL)
def test_empty_tensor_gives_empty_tensor_without_init(make):
    quantizer = make(4)
    before = int(quantizer.initialized.item())
    out = quantizer(torch.empty(0, 3))
    assert out.shape == (0, 3)
    assert int(quantizer.initialized.item()) == before


def test_quantized_layer_accepts_empty_batch():
    conv = QuantConv2d(
        3,
        4,
        3,
        weight_quantizer=dict(type='LSQQuantizer', bits=4),
        act_quantizer=dict(type='EWGSQuantizer', bits=4, role='activation'),
    )
    out = conv(torch.empty(0, 3, 8, 8))
    assert out.shape == (0, 4, 6, 6)
    assert conv.act_quantizer.initialized.item() == 0


def _net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.Flatten(),
        nn.Linear(16, 3),
    )


W4 = dict(type='LSQQuantizer', bits=4)


def test_pattern_matching_nothing_lists_close_names():
    with pytest.raises(
        ValueError,
        match=r"exclude pattern '3\.x' matches no"
        r'.*Close names',
    ):
        quantize_model(_net(), w=W4, exclude=['3.x'])
    with pytest.raises(ValueError, match='include pattern'):
        quantize_model(_net(), w=W4, include=['backbone.*'])
    with pytest.raises(ValueError, match='layer_overrides pattern'):
        quantize_model(_net(), w=W4, layer_overrides={'nope': dict(w=None)})


def test_transform_argument_errors():
    with pytest.raises(ValueError, match='at least one of w'):
        quantize_model(_net())
    with pytest.raises(ValueError, match='keys among'):
        quantize_model(_net(), w=W4, layer_overrides={'2': dict(weight=None)})
    with pytest.raises(TypeError, match="config dict with a 'type' key"):
        quantize_model(_net(), w=dict(bits=4))
    with pytest.raises(KeyError, match='NoSuchQuantizer'):
        quantize_model(_net(), w=dict(type='NoSuchQuantizer', bits=4))
    with pytest.raises(ValueError, match='valid bit-widths'):
        quantize_model(_net(), w=dict(type='LSQQuantizer', bits=0))
