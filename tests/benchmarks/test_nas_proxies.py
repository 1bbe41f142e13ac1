"""The NB201 proxy benchmark's cache: resumable, safe to interrupt, the same
scores from worker processes as in the cached file."""

import json
import os.path as osp
import sys

import numpy as np
import pytest

from mmcompress.nas.score_cache import SAME_SCORE_RTOL, load_score_cache

from ..e2e.runs import REPO, load_script

nas_proxies = load_script('benchmarks', 'nas_proxies.py')
CACHE = osp.join(REPO, 'docs', 'nas', 'nb201_scores.jsonl')


def test_cut_off_last_line_is_dropped(tmp_path):
    path = str(tmp_path / 'scores.jsonl')
    with open(path, 'w') as f:
        f.write('{"index": 3, "flops": 1.0}\n{"index": 4, "flo')
    with pytest.warns(UserWarning, match='cut-off last line'):
        assert load_score_cache(path) == {3: {'flops': 1.0}}
    nas_proxies._drop_partial_line(path)
    with open(path) as f:
        assert f.read() == '{"index": 3, "flops": 1.0}\n'
    # a broken line in the middle is not an interrupted write: it raises
    with open(path, 'w') as f:
        f.write('{"index": 3\n{"index": 4, "flops": 2.0}\n')
    with pytest.raises(ValueError, match='line 1 is not JSON'):
        load_score_cache(path)


def test_resume_with_two_workers_reproduces_cached_scores(tmp_path, monkeypatch):
    """An interrupted cache (one record, a cut line) resumed by two worker
    processes: the two missing architectures are appended with the cached
    scores, bit for bit."""
    # the pool pickles score_one by module name
    monkeypatch.setitem(sys.modules, 'nas_proxies', nas_proxies)
    table = nas_proxies.NB201Table()
    order = [int(i) for i in np.random.default_rng(0).permutation(len(table))[:3]]
    ref = load_score_cache(CACHE)
    path = str(tmp_path / 'scores.jsonl')
    with open(path, 'w') as f:
        f.write(json.dumps(dict(index=order[0], **ref[order[0]])) + '\n{"ind')
    with pytest.warns(UserWarning, match='cut-off last line'):
        cache = load_score_cache(path)
    nas_proxies.score_missing(
        order, ['az_nas'], cache, path, table, seed=0, workers=2, threads=1
    )
    again = load_score_cache(path)
    assert sorted(again) == sorted(order)
    for i in order[1:]:
        for key in ('flops', 'expressivity', 'progressivity', 'trainability'):
            assert again[i][key] == pytest.approx(
                ref[i][key], rel=SAME_SCORE_RTOL, abs=0.0
            ), (i, key)
