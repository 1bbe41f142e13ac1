"""benchmarks/bismap_gmm_fit.py on a tiny problem: the JSON line it prints."""

import json
import os

import torch

from ..e2e.runs import load_script

gmm_fit = load_script('benchmarks', 'bismap_gmm_fit.py')


def test_synthetic_features_shapes_and_determinism():
    feats = gmm_fit.synthetic_features(classes=3, per_class=50, dim=4, seed=1)
    assert [tuple(f.shape) for f in feats] == [(50, 4)] * 3
    again = gmm_fit.synthetic_features(classes=3, per_class=50, dim=4, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(feats, again))


def test_prints_one_json_line_with_the_shared_loadavg(monkeypatch, capsys):
    loads = iter([(0.4, 0.3, 0.2), (1.25, 0.6, 0.3)])
    monkeypatch.setattr(os, 'getloadavg', lambda: next(loads))
    args = '--per-class 200 --classes 2 --dim 4 --components 2 --max-iters 5'
    gmm_fit.main(args.split())
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert result['samples'] == 400
    assert (result['dim'], result['classes'], result['components']) == (4, 2, 2)
    assert 1 <= result['em_iterations'] <= 5
    assert 0 <= result['converged'] <= 2
    assert result['loadavg_before'] == '0.40 0.30 0.20'
    assert result['loadavg_after'] == '1.25 0.60 0.30'
    assert gmm_fit.loadavg.__module__ == 'machine_load'
