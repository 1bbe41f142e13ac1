"""Cached proxy scores of NB201 architectures (JSON lines, one record per line).

``benchmarks/nas_proxies.py`` writes one line per scored architecture,
``{"index": <NB201 benchmark index>, "flops": ..., "expressivity": ..., ...,
"seconds/<proxy>": ...}``; a later line for the same index adds the values of
other proxies. :func:`load_score_cache` reads such a file (a line cut short by a
killed writer is dropped with a warning), and :class:`CachedScorer` answers
``score_arch`` calls from it: the values are the ones ``score_arch`` computes with
the same torch seed, batch and resolution (tests/nas/test_scoring_exact.py
recomputes cached architectures bit for bit), and the scorer recomputes the first
architecture it takes from the cache to check that the cache was written with its
settings.
"""

import json
import os.path as osp
import warnings
from typing import Dict, Sequence

import numpy as np

from .benchmark_table import NB201Table
from .scoring import AZ_NAS_KEYS, score_arch

PROXY_KEYS = {
    'az_nas': AZ_NAS_KEYS[:3],
    'synflow': ('synflow',),
    'naswot': ('naswot',),
    'zico': ('zico',),
}
"""Values each proxy of :data:`~mmcompress.nas.scoring.PROXIES` writes (``flops``
comes with every record)."""


def load_score_cache(path: str) -> Dict[int, Dict[str, float]]:
    """Return ``{benchmark index: {value name: value, 'seconds/<proxy>': s}}``.

    Args:
        path (str): The JSON-lines file; a missing file is an empty cache.

    Returns:
        dict: The records merged per index (later lines add or replace values).

    Raises:
        ValueError: A line other than the last is not JSON (the last line without
            its newline, an interrupted write, is dropped with a warning).
    """
    cache = {}
    if not osp.exists(path):
        return cache
    with open(path) as f:
        lines = f.read().split('\n')
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            if n == len(lines) - 1:
                warnings.warn(
                    f'{path}: dropping the cut-off last line {line!r}', stacklevel=2
                )
                continue
            raise ValueError(f'{path} line {n + 1} is not JSON: {line!r}') from err
        cache.setdefault(rec.pop('index'), {}).update(rec)
    return cache


# Another x86 CPU reproduces the cached float32 scores up to summation order
# (measured up to 1.1e-6 relative, on a progressivity of -0.215); another seed, batch
# or resolution changes them by far more.
SAME_SCORE_RTOL = 1e-5


def _same(a: Dict[str, float], b: Dict[str, float], keys) -> bool:
    return all(
        np.isclose(a[k], b[k], rtol=SAME_SCORE_RTOL, atol=0.0, equal_nan=True)
        for k in keys
    )


class CachedScorer:
    """``arch -> score_arch(space, arch, proxies, seed, **kwargs)``, read from a
    score cache when it holds every value of the architecture.

    Only the NB201 space at the benchmark size (C=16, N=5) has benchmark indices.
    The first architecture answered from the cache is also recomputed; a
    difference means the cache was written with another seed, batch or
    resolution, and raises.

    Args:
        space (NB201Space): The space (C=16, N=5).
        cache (dict | str): A loaded cache or the path of one.
        proxies (Sequence[str]): Proxy names, as for ``score_arch``.
        seed (int): Torch seed of ``score_arch``. Defaults to 0 (the default of
            ``benchmarks/nas_proxies.py --seed``).
        table (NB201Table, optional): Index lookup. Defaults to the packaged one.
        **kwargs: ``score_arch`` keyword arguments (``batch_size``,
            ``resolution``).
    """

    def __init__(
        self,
        space,
        cache,
        proxies: Sequence[str] = ('az_nas',),
        seed: int = 0,
        table=None,
        **kwargs,
    ):
        if space.name != 'nb201' or (space.C, space.N) != (16, 5):
            raise ValueError(
                'a score cache holds NB201 benchmark architectures (C=16, N=5), got '
                f'space {space.name!r}'
                + (f' with C={space.C}, N={space.N}' if space.name == 'nb201' else '')
            )
        unknown = [p for p in proxies if p not in PROXY_KEYS and p != 'flops']
        if unknown:
            raise ValueError(
                f'unknown proxy {unknown}; valid: {sorted(PROXY_KEYS)} and "flops"'
            )
        self.space, self.proxies, self.seed, self.kwargs = space, proxies, seed, kwargs
        self.cache = load_score_cache(cache) if isinstance(cache, str) else cache
        self.table = table or NB201Table()
        self.keys = ('flops',) + tuple(
            k for p in proxies if p != 'flops' for k in PROXY_KEYS[p]
        )
        self.hits = self.misses = 0
        self.verified = False

    def compute(self, arch) -> Dict[str, float]:
        """``score_arch`` of ``arch`` with this scorer's settings."""
        return score_arch(self.space, arch, self.proxies, self.seed, **self.kwargs)

    def holds(self, arch) -> bool:
        """Whether the cache holds every value of ``arch``."""
        rec = self.cache.get(self.table.index(arch), {})
        return all(k in rec for k in self.keys)

    def __call__(self, arch) -> Dict[str, float]:
        rec = self.cache.get(self.table.index(arch), {})
        if not all(k in rec for k in self.keys):
            self.misses += 1
            return self.compute(arch)
        out = {k: float(rec[k]) for k in self.keys}
        if not self.verified:
            fresh = self.compute(arch)
            if not _same(out, fresh, self.keys):
                raise ValueError(
                    f'cached scores of {self.space.to_str(arch)} differ from '
                    f'score_arch with seed={self.seed}, {self.kwargs}: cached '
                    f'{out}, recomputed {fresh}; the cache was written with other '
                    'settings (benchmarks/nas_proxies.py --seed, batch 64, 32 x 32)'
                )
            self.verified = True
        self.hits += 1
        return out
