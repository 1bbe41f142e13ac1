"""The predictor benchmark on proxy-scored architectures: every method, the GIN
included, gets the proxy-rank features; the doc block holds the table."""

import json
import sys

import numpy as np
import pytest

from mmcompress.nas import NB201Table

from ..e2e.runs import load_script

nas_predictor = load_script('benchmarks', 'nas_predictor.py')


def test_proxy_features_for_every_method(tmp_path, monkeypatch):
    table = NB201Table()
    rng = np.random.default_rng(0)
    cache = tmp_path / 'scores.jsonl'
    idx = rng.choice(len(table), 60, replace=False)
    acc = table.acc[idx, 0]
    with open(cache, 'w') as f:
        for i, a in zip(idx, acc):
            # proxies that follow the accuracy (plus noise) and a useless one
            rec = dict(index=int(i), flops=float(a + rng.normal()))
            rec.update(expressivity=float(a), progressivity=float(rng.normal()))
            rec.update(trainability=float(a + rng.normal()))
            f.write(json.dumps(rec) + '\n')
    page = tmp_path / 'page.md'
    out = str(tmp_path / 'r.json')
    argv = ['nas_predictor.py', '--ks', '20', '--samples', '2', '--methods', 'svr']
    argv += ['gin', '--features', 'effective+az_nas', '--proxy-cache', str(cache)]
    argv += ['--json', out, '--out', str(page), '--block', 'blk']
    monkeypatch.setattr(sys, 'argv', argv)
    nas_predictor.main()
    rows = json.load(open(out))['rows']
    assert [(r['features'], r['method']) for r in rows] == [
        ('effective+az_nas', 'svr'),
        ('effective+az_nas', 'gin'),
    ]
    # the expressivity rank equals the accuracy rank: both methods use it
    assert all(r['tau_mean'] > 0.5 for r in rows)
    text = page.read_text()
    assert '<!-- blk:begin -->' in text
    assert '| 20 | effective+az_nas |' in text and '60 archs' in text
    monkeypatch.setattr(
        sys, 'argv', ['nas_predictor.py', '--features', 'effective+az_nas']
    )
    with pytest.raises(SystemExit):
        nas_predictor.main()
