"""Scoring architectures with proxies, AZ-NAS rank aggregation and rank correlation.

A proxy name maps to a function of a built network (see :data:`PROXIES`); each
returns one or more named values. ``flops`` is the complexity proxy. The AZ-NAS
score of an architecture in a set of ``N`` is ``sum_m log(rank_m / N)`` over
expressivity, progressivity, trainability and FLOPs, ranks ascending (best = N,
ties = average rank), as in the official notebook and evolutionary search.
"""

import inspect
import math
import warnings
from typing import Dict, Iterable, Sequence, Tuple

import numpy as np
import torch
from scipy import stats

from .flops import count_flops
from .proxies import az_nas, naswot, synflow, zico

AZ_NAS_KEYS = ('expressivity', 'progressivity', 'trainability', 'flops')

PROXIES = {
    'az_nas': az_nas,
    'synflow': synflow,
    'naswot': naswot,
    'zico': zico,
}


def score_arch(
    space, arch, proxies: Sequence[str] = ('az_nas',), seed: int = 0, **kwargs
) -> Dict[str, float]:
    """Build ``arch`` and compute the named proxies plus its FLOPs.

    Args:
        space (SearchSpace): The space that builds ``arch``.
        arch: An architecture of ``space``.
        proxies (Sequence[str]): Names from :data:`PROXIES` (``'flops'`` is always
            computed). Defaults to ``('az_nas',)``.
        seed (int): Torch seed set before building and before each proxy.
        **kwargs: Passed to the proxy functions that take them (``batch_size``,
            ``resolution``).

    Returns:
        dict: Proxy values by name, with ``flops`` (``space.flops`` when the space
        has a closed form for this input size, else counted on the built network).
    """
    unknown = [p for p in proxies if p not in PROXIES and p != 'flops']
    if unknown:
        raise ValueError(
            f'unknown proxy {unknown}; valid proxies are {sorted(PROXIES)} and "flops"'
        )
    torch.manual_seed(seed)
    model = space.build(arch)
    shape = space_input_shape(space, kwargs)
    if space.closed_form_flops and tuple(shape) == tuple(space.input_shape):
        flops = space.flops(arch)
    else:
        flops = count_flops(model, shape)
    out = dict(flops=float(flops))
    for name in proxies:
        if name == 'flops':
            continue
        fn = PROXIES[name]
        accepted = inspect.signature(fn).parameters
        torch.manual_seed(seed)
        out.update(fn(model, **{k: v for k, v in kwargs.items() if k in accepted}))
    return out


def space_input_shape(space, kwargs: Dict) -> Tuple[int, int, int]:
    """``(C, H, W)`` of one input of ``space`` (resolution from ``kwargs``)."""
    res = kwargs.get('resolution', getattr(space, 'resolution', 32))
    return (getattr(space, 'in_channels', 3), res, res)


def nan_to_neginf(values: Iterable[float]) -> Tuple[np.ndarray, int]:
    """Map NaN to ``-inf`` (official rule) and return the array and the count."""
    arr = np.asarray(list(values), dtype=np.float64)
    nan = np.isnan(arr)
    arr[nan] = -np.inf
    return arr, int(nan.sum())


def aggregate_ranks(table: Dict[str, Sequence[float]], keys=AZ_NAS_KEYS) -> np.ndarray:
    """Non-linear rank aggregation: ``sum_k log(rankdata(table[k]) / N)``.

    Args:
        table (dict): Proxy name -> values, one per architecture, higher = better.
            NaN is mapped to ``-inf`` first (ranked last) with a warning that
            counts them.
        keys (Sequence[str]): Proxies to aggregate. Defaults to AZ_NAS_KEYS.

    Returns:
        np.ndarray: The aggregated score per architecture (max = best).
    """
    missing = [k for k in keys if k not in table]
    if missing:
        raise KeyError(
            f'rank aggregation needs proxies {list(keys)}; missing {missing}'
        )
    lengths = {k: len(table[k]) for k in keys}
    if len(set(lengths.values())) != 1 or not lengths[keys[0]]:
        raise ValueError(
            f'proxy columns must be non-empty and equal-length, got {lengths}'
        )
    n = lengths[keys[0]]
    agg = np.zeros(n)
    for k in keys:
        values, nan = nan_to_neginf(table[k])
        if nan:
            warnings.warn(
                f'aggregate_ranks: {nan} NaN value(s) of {k!r} ranked last (as -inf, '
                'the official AZ-NAS rule)',
                stacklevel=2,
            )
        agg += np.log(stats.rankdata(values) / n)
    return agg


def rank_correlation(score: Sequence[float], acc: Sequence[float]) -> Dict[str, float]:
    """Kendall tau-b and Spearman rho between scores and accuracies (NaN scores
    count as ``-inf``; ``-inf`` ties rank together at the bottom)."""
    s = stats.rankdata(nan_to_neginf(score)[0])
    a = stats.rankdata(np.asarray(acc, dtype=np.float64))
    tau = stats.kendalltau(s, a)[0]
    rho = stats.spearmanr(s, a)[0]
    return dict(kendall_tau=float(tau), spearman=float(rho))


def count_neginf(table: Dict[str, Sequence[float]]) -> Dict[str, int]:
    """Number of ``-inf`` (or NaN) values per proxy column."""
    return {
        k: int(sum(1 for v in vals if math.isnan(v) or v == -math.inf))
        for k, vals in table.items()
    }
