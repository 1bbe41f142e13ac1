"""PTQ range observers against numpy, per tensor / channel / group."""

import numpy as np
import pytest
import torch

from mmcompress.quant.ptq import (
    EMAMinMaxObserver,
    MinMaxObserver,
    MSEObserver,
    PercentileObserver,
    build_observer,
)


def _batches(signed=True):
    gen = torch.Generator().manual_seed(0)
    out = []
    for k in range(3):
        x = torch.randn(4, 6, 5, 5, generator=gen) * (k + 1)
        out.append(x if signed else x.relu())
    return out


def _rows(batches, granularity, groups=None):
    """numpy (rows, values) of all batches, channel axis 1."""
    x = np.concatenate(
        [b.numpy().transpose(1, 0, 2, 3).reshape(6, -1) for b in batches], 1
    )
    if granularity == 'tensor':
        return x.reshape(1, -1)
    if granularity == 'group':
        return x.reshape(groups, -1)
    return x


@pytest.mark.parametrize('granularity', ['tensor', 'channel'])
@pytest.mark.parametrize('signed', [True, False])
def test_minmax_matches_numpy(granularity, signed):
    batches = _batches(signed)
    obs = MinMaxObserver(granularity=granularity, channel_axis=1)
    for b in batches:
        obs.update(b)
    rows = _rows(batches, granularity)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    if signed:
        clip = np.abs(rows).max(1)
    else:
        clip = rows.max(1)
    expected = clip / qmax
    np.testing.assert_allclose(
        obs.compute_scale(qmin, qmax).numpy(), expected, rtol=1e-6
    )
    assert obs.has_negative is signed


def test_ema_minmax_matches_numpy_recursion():
    batches = _batches()
    obs = EMAMinMaxObserver(momentum=0.25, granularity='channel', channel_axis=1)
    for b in batches:
        obs.update(b)
    low = high = None
    for b in batches:
        r = b.numpy().transpose(1, 0, 2, 3).reshape(6, -1)
        lo, hi = r.min(1), r.max(1)
        if low is None:
            low, high = lo, hi
        else:
            low = low + 0.25 * (lo - low)
            high = high + 0.25 * (hi - high)
    expected = np.maximum(np.abs(low), np.abs(high)) / 7
    np.testing.assert_allclose(obs.compute_scale(-8, 7).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize('granularity', ['tensor', 'channel'])
def test_percentile_matches_numpy(granularity):
    batches = _batches()
    obs = PercentileObserver(percentile=99.0, granularity=granularity, channel_axis=1)
    for b in batches:
        obs.update(b)
    rows = _rows(batches, granularity)
    expected = np.percentile(np.abs(rows), 99.0, axis=1) / 127
    np.testing.assert_allclose(
        obs.compute_scale(-128, 127).numpy(), expected, rtol=1e-5
    )
    # unsigned grid: percentile of max(x, 0)
    expected = np.percentile(np.maximum(rows, 0), 99.0, axis=1) / 15
    np.testing.assert_allclose(obs.compute_scale(0, 15).numpy(), expected, rtol=1e-5)


def _numpy_mse_clip(values, qmin, qmax, candidates, min_ratio, p):
    top = np.abs(values).max() if qmin < 0 else np.maximum(values, 0).max()
    best, best_err = top, np.inf
    for ratio in np.linspace(min_ratio, 1.0, candidates):
        clip = np.float32(top * np.float32(ratio))
        scale = clip / qmax
        quant = np.clip(np.round(values / scale), qmin, qmax) * scale
        err = (np.abs(quant - values) ** p).sum()
        if err < best_err:
            best, best_err = clip, err
    return best


@pytest.mark.parametrize('p', [2.0, 2.4])
def test_mse_matches_numpy_search(p):
    batches = _batches()
    obs = MSEObserver(p=p, num_candidates=50, granularity='channel', channel_axis=1)
    for b in batches:
        obs.update(b)
    rows = _rows(batches, 'channel')
    expected = [_numpy_mse_clip(r, -8, 7, 50, 0.01, p) / 7 for r in rows]
    np.testing.assert_allclose(obs.compute_scale(-8, 7).numpy(), expected, rtol=1e-5)
    # at 4 bits the optimum clips gaussian data well inside the maximum
    assert (obs.compute_scale(-8, 7) < torch.tensor(np.abs(rows).max(1) / 7)).all()


def test_mse_clip_lowers_the_error_vs_minmax():
    x = torch.randn(20000, generator=torch.Generator().manual_seed(1))
    mse, minmax = MSEObserver(), MinMaxObserver()
    mse.update(x)
    minmax.update(x)

    def error(scale):
        return ((torch.clamp(torch.round(x / scale), -8, 7) * scale - x) ** 2).sum()

    assert error(mse.compute_scale(-8, 7)) < 0.7 * error(minmax.compute_scale(-8, 7))


def test_group_observer_degenerate_cases_and_sharing():
    batches = _batches()
    per = {}
    for name, kwargs in [
        ('tensor', dict(granularity='tensor')),
        ('channel', dict(granularity='channel')),
        ('g1', dict(granularity='group', num_groups=1)),
        ('g6', dict(granularity='group', num_groups=6)),
        ('g2', dict(granularity='group', num_groups=2)),
    ]:
        obs = MinMaxObserver(channel_axis=1, **kwargs)
        for b in batches:
            obs.update(b)
        per[name] = obs.compute_scale(-128, 127)
    # G = 1: every channel gets the per-tensor scale; G = C: per-channel
    assert torch.allclose(per['g1'], per['tensor'].expand(6))
    assert torch.allclose(per['g6'], per['channel'])
    # G = 2: channels 0-2 and 3-5 share the max of their group
    expected = torch.cat(
        [per['channel'][:3].max().expand(3), per['channel'][3:].max().expand(3)]
    )
    assert torch.equal(per['g2'], expected)


def test_sample_observer_subsamples_beyond_max_samples():
    x = torch.arange(1000.0)
    obs = PercentileObserver(percentile=100, max_samples=100, seed=3)
    obs.update(x)
    obs.update(x + 1000)
    assert obs.values().shape == (1, 100)
    assert obs.seen == 2000
    # a uniform subsample: both batches represented
    assert (obs.values() < 1000).any() and (obs.values() >= 1000).any()


def test_observers_are_registered_components():
    obs = build_observer(
        dict(type='PercentileObserver', percentile=99.9), channel_axis=1
    )
    assert isinstance(obs, PercentileObserver) and obs.channel_axis == 1


def test_observer_errors_name_the_problem():
    obs = MinMaxObserver()
    with pytest.raises(RuntimeError, match='no data observed'):
        obs.compute_scale(-8, 7)
    with pytest.raises(ValueError, match='NaN or inf'):
        obs.update(torch.tensor([1.0, float('nan')]))
    obs = MinMaxObserver(granularity='group', num_groups=4, channel_axis=1)
    with pytest.raises(ValueError, match='num_groups=4 does not divide the 6 channels'):
        obs.update(torch.randn(2, 6, 3, 3))
    with pytest.raises(ValueError, match='needs num_groups'):
        MinMaxObserver(granularity='group')
    with pytest.raises(ValueError, match='granularity must be one of'):
        MinMaxObserver(granularity='layer')
    with pytest.raises(ValueError, match='percentile must be in'):
        PercentileObserver(percentile=0)
    with pytest.raises(TypeError, match="a 'type' key"):
        build_observer('MinMaxObserver')
