"""Mixed precision by budget: the allocation meets its latency budget and is
the cheapest one that does (brute force on a toy table); sensitivities grow
as bits shrink; the allocation becomes layer_overrides a QAT model takes."""

import itertools

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import quantize_model
from mmcompress.quant.mixed_precision import (
    allocate_bits,
    layer_bops,
    layer_overrides,
    output_sensitivity,
    quantized_layer_names,
)

# toy per-layer latencies (ms) of float / 8-bit / 4-bit kernels and costs
LATENCY = {
    'a': {None: 4.0, 8: 1.5, 4: 1.0},
    'b': {None: 2.0, 8: 0.9, 4: 0.5},
    'c': {None: 6.0, 8: 2.0, 4: 1.2},
    'd': {None: 1.0, 8: 0.4, 4: 0.3},
}
SENSITIVITY = {
    'a': {None: 0.0, 8: 0.01, 4: 0.30},
    'b': {None: 0.0, 8: 0.02, 4: 0.05},
    'c': {None: 0.0, 8: 0.01, 4: 0.08},
    'd': {None: 0.0, 8: 0.03, 4: 0.50},
}


def _brute_force(budget):
    layers = sorted(LATENCY)
    best = None
    for picks in itertools.product(*(list(LATENCY[n]) for n in layers)):
        ms = sum(LATENCY[n][o] for n, o in zip(layers, picks))
        cost = sum(SENSITIVITY[n][o] for n, o in zip(layers, picks))
        if ms <= budget and (best is None or cost < best[0]):
            best = (cost, dict(zip(layers, picks)))
    return best


@pytest.mark.parametrize('budget', [3.0, 3.6, 4.5, 5.0, 8.0, 13.0])
def test_allocation_meets_the_budget_at_least_cost(budget):
    allocation = allocate_bits(SENSITIVITY, LATENCY, budget, resolution=0.01)
    assert sum(LATENCY[n][o] for n, o in allocation.items()) <= budget
    cost = sum(SENSITIVITY[n][o] for n, o in allocation.items())
    assert cost == pytest.approx(_brute_force(budget)[0])


def test_allocation_between_uniform_8_and_4_bits():
    all8 = sum(t[8] for t in LATENCY.values())  # 4.8 ms
    all4 = sum(t[4] for t in LATENCY.values())  # 3.0 ms
    allocation = allocate_bits(SENSITIVITY, LATENCY, (all8 + all4) / 2, 0.01)
    # 3.9 ms: 'c' and 'b' (cheap to narrow) drop to 4 bits, 'a' and 'd' keep 8
    assert allocation == {'a': 8, 'b': 4, 'c': 4, 'd': 8}


def test_sensitivity_grows_as_bits_shrink():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    )
    batches = [torch.randn(4, 1, 8, 8) for _ in range(2)]
    before = model[0].weight.clone()
    result = output_sensitivity(model, batches, ['0', '3'], options=(8, 4, 2))
    for layer in ('0', '3'):
        assert 0 < result[layer][8] < result[layer][4] < result[layer][2]
    assert torch.equal(model[0].weight, before)  # weights restored
    assert not model[0]._forward_pre_hooks


def test_overrides_build_the_allocated_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 3))
    overrides = layer_overrides({'0': 8, '1': 4, '2': None})
    assert overrides == {
        '1': dict(w=dict(bits=4), a=dict(bits=4)),
        '2': dict(w=None, a=None),
    }
    quantized = quantize_model(
        model,
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
        keep_first_float=False,
        keep_output_float=False,
        layer_overrides=overrides,
    )
    assert quantized[0].weight_quantizer.bits == 8
    assert quantized[1].weight_quantizer.bits == 4
    assert quantized[1].act_quantizer.bits == 4
    assert getattr(quantized[2], 'weight_quantizer', None) is None


def test_layer_latency_measured_in_onnxruntime_feeds_the_allocation():
    from mmcompress.quant.mixed_precision import layer_latency

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 10),
    )
    example = torch.randn(1, 3, 8, 8)
    latency = layer_latency(model, example, ['0', '2', '4'], runs=3)
    for name in ('0', '2', '4'):
        assert set(latency[name]) == {None, 8, 4}
        assert latency[name][None] > 0 and latency[name][8] > 0
        # onnxruntime has no 4-bit kernels: 4 bits run the 8-bit kernel
        assert latency[name][4] == latency[name][8]
    sensitivity = output_sensitivity(model, [example], ['0', '2', '4'])
    for name in sensitivity:
        sensitivity[name][None] = 0.0
    budget = sum(min(t.values()) for t in latency.values()) * 1.5
    allocation = allocate_bits(sensitivity, latency, budget)
    assert sum(latency[n][o] for n, o in allocation.items()) <= budget


def test_layer_bops_by_hand_and_the_quantized_layer_names():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
        nn.ConvTranspose2d(6, 2, 2, stride=2),
        nn.Flatten(),
        nn.Linear(2 * 8 * 8, 5),
    )
    quant = dict(
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
    )
    # first conv and the output layer stay float by the default rules
    assert quantized_layer_names(model, quant) == ['2', '3']
    assert type(model[2]) is nn.Conv2d  # the model itself is unchanged
    table = layer_bops(model, torch.zeros(2, 3, 8, 8), ['0', '2', '3', '5'])
    macs = dict(
        [
            ('0', 2 * 4 * 8 * 8 * 3 * 9),  # outputs x (in x kernel)
            ('2', 2 * 6 * 4 * 4 * 2 * 9),  # groups: 2 input channels each
            ('3', 2 * 6 * 4 * 4 * 2 * 4),  # deconv: inputs x (out x kernel)
            ('5', 2 * 5 * 128),
        ]
    )
    for name, count in macs.items():
        assert table[name] == {
            None: pytest.approx(count * 1024 / 1e9),
            8: pytest.approx(count * 64 / 1e9),
            4: pytest.approx(count * 16 / 1e9),
        }
    # a BOPs table is a cost table for allocate_bits, with its own unit
    sensitivity = {n: {None: 0.0, 8: 0.1, 4: 0.2} for n in table}
    with pytest.raises(ValueError, match='the cheapest .* GBOPs'):
        allocate_bits(sensitivity, table, 1e-6, quantity='BOPs', unit='GBOPs')
