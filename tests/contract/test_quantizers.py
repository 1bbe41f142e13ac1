"""Contract of every registered quantizer: same shape and dtype out, at most
``2**bits`` levels per channel, a batch of 1, finite gradients reaching the
input and every quantizer parameter, and clear errors for a bit-width outside
the class's range and for a tensor with the wrong number of channels.

The table ``CASES`` must hold one entry per quantizer registered by
mmcompress: ``test_every_registered_quantizer_has_a_case`` fails for a new
quantizer without one.
"""

import pytest
import torch

from mmcompress.registry import MODELS

from .registered import missing_and_stale, registered_quantizers

# name -> (build config, role); weights are (C_out, C_in, k, k) with channels
# on axis 0, activations (N, C, H, W) with channels on axis 1
CASES = {
    'UniformSTEQuantizer': (dict(bits=4), 'activation'),
    'LSQQuantizer': (dict(bits=4), 'activation'),
    'EWGSQuantizer': (dict(bits=3, role='activation'), 'activation'),
    'DAQQuantizer': (dict(bits=3, role='weight'), 'weight'),
    'N2UQActQuantizer': (dict(bits=2), 'activation'),
    'N2UQWeightQuantizer': (dict(bits=2), 'weight'),
    'RSignQuantizer': (dict(num_channels=4), 'activation'),
    'ScaledBinaryWeightQuantizer': (dict(num_channels=4), 'weight'),
}
NAMES = sorted(CASES)
CHANNEL_AXIS = dict(weight=0, activation=1)


def test_every_registered_quantizer_has_a_case():
    registered = registered_quantizers()
    assert len(registered) == len(NAMES), missing_and_stale(registered, CASES)
    assert not missing_and_stale(registered, CASES)


def build(name, **overrides):
    cfg, _ = CASES[name]
    return MODELS.build(dict(type=name, **{**cfg, **overrides}))


def sample(role, batch=4, channels=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if role == 'weight':
        return torch.randn(channels, 3, 3, 3, generator=gen) * 0.3
    return torch.randn(batch, channels, 5, 5, generator=gen).relu() * 2


def levels_per_channel(out, axis):
    return max(len(torch.unique(out.select(axis, c))) for c in range(out.shape[axis]))


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('batch', [4, 1])
def test_shape_levels_and_gradients(name, batch):
    role = CASES[name][1]
    quantizer = build(name).train()
    x = sample(role, batch=batch).requires_grad_()
    out = quantizer(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert levels_per_channel(out.detach(), CHANNEL_AXIS[role]) <= 2**quantizer.bits
    # not the identity: the output takes few values
    assert len(torch.unique(out.detach())) < len(torch.unique(x.detach()))
    torch.manual_seed(0)
    upstream = torch.randn(out.shape)
    (out * upstream).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0, 'no gradient reaches the input'
    for pname, param in quantizer.named_parameters():
        assert param.grad is not None, f'{name}.{pname} gets no gradient'
        assert torch.isfinite(param.grad).all(), (pname, param.grad)


@pytest.mark.parametrize('name', NAMES)
def test_bits_outside_the_class_range_raise(name):
    cls = MODELS.get(name)
    with pytest.raises(
        ValueError,
        match=rf'{name}: bits={cls.max_bits + 1} '
        rf'is not supported; valid bit-widths are '
        rf'{cls.min_bits}\.\.{cls.max_bits}',
    ):
        build(name, bits=cls.max_bits + 1)


def per_channel(name):
    role = CASES[name][1]
    return build(
        name, per_channel=True, num_channels=4, channel_axis=CHANNEL_AXIS[role]
    )


# N2UQ quantizers are per-tensor (activation) or per-channel over any channel
# count (weight) by definition: they ignore per_channel
PER_CHANNEL = [name for name in NAMES if per_channel(name).per_channel]


def test_per_channel_cases_are_the_expected_ones():
    assert set(NAMES) - set(PER_CHANNEL) == {'N2UQActQuantizer', 'N2UQWeightQuantizer'}


@pytest.mark.parametrize('name', PER_CHANNEL)
def test_wrong_channel_count_raises(name):
    quantizer = per_channel(name).train()
    with pytest.raises(
        ValueError,
        match=rf'{name}: expected 4 channels along '
        r'axis \d, got a tensor of shape \(.*\)',
    ):
        quantizer(sample(CASES[name][1], channels=3))


@pytest.mark.parametrize('name', NAMES)
def test_empty_tensor_gives_empty_tensor_without_init(name):
    quantizer = build(name).train()
    before = int(quantizer.initialized.item())
    out = quantizer(torch.empty(0, 4, 5, 5))
    assert out.shape == (0, 4, 5, 5)
    assert int(quantizer.initialized.item()) == before


@pytest.mark.parametrize('name', [n for n in NAMES if not build(n).initialized.item()])
def test_nan_or_inf_at_initialization_raises(name):
    quantizer = build(name).train()
    bad = sample(CASES[name][1])
    bad[0, 0, 0, 0] = float('nan')
    with pytest.raises(
        ValueError, match=f'{name}: cannot initialize from a tensor holding NaN'
    ):
        quantizer(bad)
    assert quantizer.initialized.item() == 0
