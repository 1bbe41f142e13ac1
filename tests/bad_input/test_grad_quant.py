"""Bad input to gradient quantization (LBT): bit-widths, slots, layer types
without a quantized backward, NaN/inf errors, resuming without gamma."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import LBTGradQuantizer, QuantLinear, quantize_model
from mmcompress.quant.grad import LBTIntervalInitHook


@pytest.mark.parametrize('bits', [1, 9, 16, 4.0, True])
def test_grad_bits_out_of_range(bits):
    """Gradient quantizer configured with bits=1, 9, 16 or a non-int.

    Message: LBTGradQuantizer: bits must be an int in 2..8
    """
    with pytest.raises(
        ValueError,
        match=r'LBTGradQuantizer: bits must be an int '
        rf'in 2\.\.8 .*got {bits!r}',
    ):
        LBTGradQuantizer(bits=bits)


def test_grad_interval_unknown():
    """Gradient quantizer configured with an unknown interval ('minmax').

    Message: interval must be one of ('lbt', 'fixed', 'mse'), got 'minmax'
    """
    with pytest.raises(
        ValueError,
        match=r"interval must be one of \('lbt', "
        r"'fixed', 'mse'\), got 'minmax'",
    ):
        LBTGradQuantizer(interval='minmax')


@pytest.mark.parametrize('gamma', [0.0, 1.5, math.nan])
def test_grad_fixed_gamma_out_of_range(gamma):
    """Fixed-interval gradient quantizer with gamma=0, 1.5 or nan.

    Message: LBTGradQuantizer: gamma must be in (0, 1] (clip = gamma * max|g|)
    """
    with pytest.raises(
        ValueError,
        match=r'gamma must be in \(0, 1\] \(clip = '
        rf'gamma \* max\|g\|\), got {gamma}',
    ):
        LBTGradQuantizer(interval='fixed', gamma=gamma)


@pytest.mark.parametrize('slot', ['w', 'a'])
def test_grad_quantizer_in_weight_or_activation_slot(slot):
    """The gradient quantizer config put in w or a instead of g.

    Message: is a gradient quantizer but was given as the w quantizer
    """
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(
        ValueError,
        match=r'QuantLinear: LBTGradQuantizer is a '
        rf'gradient quantizer but was given as the {slot} '
        r'quantizer; put it in g',
    ):
        quantize_model(
            model,
            keep_output_float=False,
            **{slot: dict(type='LBTGradQuantizer', bits=4)},
        )


def test_forward_quantizer_in_gradient_slot():
    """A weight/activation quantizer (LSQ) given as the gradient quantizer g.

    Message: g must be a gradient quantizer (identity forward, quantized backward
    """
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with pytest.raises(
        ValueError,
        match=r'g must be a gradient quantizer '
        r'\(identity forward, quantized backward, e\.g\. '
        r'LBTGradQuantizer\), got LSQQuantizer',
    ):
        quantize_model(
            model, g=dict(type='LSQQuantizer', bits=4), keep_output_float=False
        )


def test_grad_quantizer_on_layer_without_quantized_backward():
    """A gradient quantizer on a layer type that declares no quantized backward.

    Message: has no quantized backward (quantized_backward=False)
    """

    class ForwardOnlyLinear(QuantLinear):
        quantized_backward = False

    with pytest.raises(
        ValueError,
        match=r'ForwardOnlyLinear has no quantized '
        r'backward \(quantized_backward=False\): a gradient '
        r'quantizer \(LBTGradQuantizer\) cannot be attached',
    ):
        ForwardOnlyLinear.from_float(
            nn.Linear(3, 2), grad_quantizer=dict(type='LBTGradQuantizer')
        )


def _runner(model, resume=False):
    logs = []
    logger = SimpleNamespace(info=logs.append, warning=logs.append)
    return SimpleNamespace(
        model=model,
        optim_wrapper=SimpleNamespace(),
        logger=logger,
        iter=0,
        _resume=resume,
    ), logs


def _model():
    return quantize_model(
        nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)),
        g=dict(type='LBTGradQuantizer', bits=4),
        keep_output_float=False,
    )


def test_nonfinite_gradients_skipped_counted_and_reported():
    """NaN/inf gradients reach a gradient quantizer during training.

    Message: they were passed on unquantized and left gamma unchanged
    """
    model = _model()
    model(torch.randn(3, 4)).sum().backward()  # walk-down initialisation
    gammas = [
        float(q.gamma) for q in model.modules() if isinstance(q, LBTGradQuantizer)
    ]
    runner, logs = _runner(model)
    hook = LBTIntervalInitHook()
    model(torch.randn(3, 4)).sum().backward()
    hook.after_train_iter(runner, 0)
    assert not logs
    model[1].weight.data[0, 0] = math.inf  # inf output: nan error into layer 0
    out = model(torch.randn(3, 4))
    out.sum().backward()
    hook.after_train_iter(runner, 1)
    assert any(
        "met NaN/inf gradients (layers: ['0.grad_quantizer']); they "
        'were passed on unquantized and left gamma unchanged' in m
        for m in logs
    )
    assert float(model[0].grad_quantizer.gamma) != 0  # not corrupted
    assert math.isfinite(float(model[0].grad_quantizer.gamma))
    assert int(model[0].grad_quantizer.num_nonfinite) == 1
    assert len(gammas) == 2


def test_resume_from_checkpoint_without_gamma():
    """Resuming an LBT run from a checkpoint that has no gamma (a W/A-only run).

    Message: the resumed checkpoint has no LBT controller state (gamma)
    """
    model = _model()
    checkpoint = dict(
        state_dict={
            k: v for k, v in model.state_dict().items() if 'grad_quantizer' not in k
        }
    )
    runner, logs = _runner(model, resume=True)
    LBTIntervalInitHook().after_load_checkpoint(runner, checkpoint)
    assert any(
        'the resumed checkpoint has no LBT controller state (gamma) for '
        '2 gradient quantizers (e.g. 0.grad_quantizer)' in m
        for m in logs
    )
    assert all(q.needs_init for q in model.modules() if isinstance(q, LBTGradQuantizer))
    # with the state it says nothing
    runner, logs = _runner(model, resume=True)
    LBTIntervalInitHook().after_load_checkpoint(
        runner, dict(state_dict=model.state_dict())
    )
    assert not logs
