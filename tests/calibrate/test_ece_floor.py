"""ece_sampling_floor: the ECE of a calibrated model from finite test sets,
against the binomial mean absolute deviation."""

import math

import pytest
import torch

from mmcompress.calibrate import ece_sampling_floor


def _binomial_mean_abs_deviation(n, p):
    """E|k/n - p| for k ~ Binomial(n, p), summed exactly."""
    return sum(
        math.comb(n, k) * p**k * (1 - p) ** (n - k) * abs(k / n - p)
        for k in range(n + 1)
    )


@pytest.mark.parametrize('confidence', [0.5, 0.9])
def test_one_bin_equals_binomial_mean_abs_deviation(confidence):
    # every confidence in one bin: ECE = |accuracy - confidence|
    n, draws = 400, 2000
    floor = ece_sampling_floor(torch.full((n,), confidence), draws=draws)
    expected = _binomial_mean_abs_deviation(n, confidence)
    assert floor['mean'] == pytest.approx(expected, abs=4 * floor['std'] / draws**0.5)
    # the spread of |k/n - p|: sqrt(Var k/n - (E|k/n - p|)^2)
    spread = math.sqrt(confidence * (1 - confidence) / n - expected**2)
    assert floor['std'] == pytest.approx(spread, rel=0.1)


def test_shrinks_with_the_test_set_like_one_over_sqrt_n():
    small = ece_sampling_floor(torch.full((100,), 0.7), draws=500)['mean']
    large = ece_sampling_floor(torch.full((10000,), 0.7), draws=500)['mean']
    assert large / small == pytest.approx(0.1, rel=0.15)


def test_certain_predictions_have_no_floor_and_the_seed_reproduces():
    assert ece_sampling_floor(torch.ones(50)) == dict(mean=0.0, std=0.0)
    conf = torch.rand(300, generator=torch.Generator().manual_seed(1))
    assert ece_sampling_floor(conf, seed=3) == ece_sampling_floor(conf, seed=3)
    assert ece_sampling_floor(conf, seed=3) != ece_sampling_floor(conf, seed=4)


def test_bad_inputs_name_what_was_given():
    with pytest.raises(ValueError, match=r'draws must be an int >= 2, got 1'):
        ece_sampling_floor(torch.ones(3), draws=1)
    with pytest.raises(ValueError, match=r'\[0, 1\], got values in \[-0.5'):
        ece_sampling_floor(torch.tensor([-0.5, 0.5]))
    with pytest.raises(ValueError, match='0 samples'):
        ece_sampling_floor(torch.ones(0))
