"""Score cache: the cached values are score_arch's; a cache written with other
settings is refused; uncached architectures are computed."""

import json
import os.path as osp

import numpy as np
import pytest

from mmcompress.nas import NB201Space, NB201Table, score_arch
from mmcompress.nas.score_cache import CachedScorer, load_score_cache

CACHE = osp.join(osp.dirname(__file__), '..', '..', 'docs', 'nas', 'nb201_scores.jsonl')
TABLE = NB201Table()
KEYS = ('flops', 'expressivity', 'progressivity', 'trainability')


def _cached(n):
    """The first ``n`` cached AZ-NAS records, as {index: record}."""
    out = {}
    with open(CACHE) as f:
        for line in f:
            rec = json.loads(line)
            if all(k in rec for k in KEYS):
                out[rec.pop('index')] = rec
            if len(out) == n:
                return out


def _write(path, records):
    with open(path, 'w') as f:
        for i, rec in records.items():
            f.write(json.dumps(dict(index=i, **rec)) + '\n')


def test_cached_values_are_score_arch_values(tmp_path):
    records = _cached(2)
    path = str(tmp_path / 'cache.jsonl')
    _write(path, records)
    space = NB201Space()
    scorer = CachedScorer(space, path, ['az_nas'], seed=0, table=TABLE)
    first, second = (tuple(TABLE.codes[i]) for i in records)
    got = scorer(first)  # verified against a recomputation
    assert got == {k: records[TABLE.index(first)][k] for k in KEYS}
    assert scorer.verified and (scorer.hits, scorer.misses) == (1, 0)
    assert scorer(second) == {k: records[TABLE.index(second)][k] for k in KEYS}
    # an architecture the cache lacks is computed
    other = next(tuple(c) for i, c in enumerate(TABLE.codes) if i not in records)
    assert scorer(other) == score_arch(space, other, ['az_nas'], seed=0)
    assert (scorer.hits, scorer.misses) == (2, 1)


def test_cache_of_other_settings_is_refused(tmp_path):
    # a cell with every score finite (another seed moves those by > 1e-5)
    i, rec = next(
        (i, r) for i, r in _cached(20).items() if np.isfinite(list(r.values())).all()
    )
    records = {i: rec}
    arch = tuple(TABLE.codes[i])
    with pytest.raises(ValueError, match='differ from score_arch with seed=1'):
        CachedScorer(NB201Space(), records, ['az_nas'], seed=1)(arch)
    # 0.1 % off (another setting moves scores by more; another CPU by < 1e-5)
    tampered = {i: {k: v * 1.001 for k, v in rec.items()}}
    with pytest.raises(ValueError, match='written with other settings'):
        CachedScorer(NB201Space(), tampered, ['az_nas'], seed=0)(arch)
    with pytest.raises(ValueError, match='C=8, N=5'):
        CachedScorer(NB201Space(C=8), records)
    with pytest.raises(ValueError, match='unknown proxy'):
        CachedScorer(NB201Space(), records, ['grasp'])


def test_load_score_cache_merges_records(tmp_path):
    path = str(tmp_path / 'c.jsonl')
    with open(path, 'w') as f:
        f.write('{"index": 3, "flops": 1.0}\n{"index": 3, "synflow": 2.0}\n')
    assert load_score_cache(path) == {3: {'flops': 1.0, 'synflow': 2.0}}
    assert load_score_cache(str(tmp_path / 'missing.jsonl')) == {}
