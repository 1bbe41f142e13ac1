"""The supernet benchmark's bookkeeping: stand-alone cache consistency and the
multi-seed summary (Kendall tau per run, per-method spread, paired gap)."""

import argparse
import json
import sys

import numpy as np
import pytest
from scipy import stats

from mmcompress.nas import NB201Space, NB201Table
from mmcompress.nas.supernet import branch_of, cost_groups

from ..e2e.runs import load_script

nas_supernet = load_script('benchmarks', 'nas_supernet.py')

SPACE = NB201Space()
# five connected cells and one without an input-to-output path (all `none`)
ARCHS = [
    SPACE.to_str(a)
    for a in [
        (3, 3, 3, 3, 3, 3),
        (2, 2, 2, 2, 2, 2),
        (1, 1, 1, 1, 1, 1),
        (4, 4, 4, 4, 4, 4),
        (3, 0, 0, 0, 2, 0),
        (0, 0, 0, 0, 0, 0),
    ]
]
REF = [80.0, 78.0, 75.0, 70.0, 60.0, 10.0]


def _alone(accs, seed=0):
    return {k: dict(arch=k, acc=a, steps=200, seed=seed) for k, a in zip(ARCHS, accs)}


def _run(method, seed, accs):
    return dict(method=method, seed=seed, archs=ARCHS, accs=list(accs))


def test_connected():
    assert [nas_supernet.connected(SPACE, k) for k in ARCHS] == [1] * 5 + [0]
    # an edge into node 3 from a node that the input cannot reach: no path
    assert not nas_supernet.connected(SPACE, SPACE.to_str((0, 0, 3, 0, 0, 0)))


def test_pair_concordance_by_hand():
    acc = np.array([3.0, 2.0, 1.0, 1.0])
    ref = np.array([3.0, 1.0, 2.0, 0.0])
    everything = np.ones((4, 4), bool)
    # pairs (i, j): 01 +, 02 +, 03 +, 12 -, 13 +, 23 tied in acc (left out)
    assert nas_supernet.pair_concordance(acc, ref, everything) == pytest.approx(0.6)
    groups = np.array([0, 0, 1, 1])
    same = groups[:, None] == groups[None, :]
    assert nas_supernet.pair_concordance(acc, ref, same) == pytest.approx(1.0)
    # cross pairs 02 +, 03 +, 12 -, 13 +
    assert nas_supernet.pair_concordance(acc, ref, ~same) == pytest.approx(0.5)
    only_tied = np.zeros((4, 4), bool)
    only_tied[2, 3] = True
    assert np.isnan(nas_supernet.pair_concordance(acc, ref, only_tied))


def test_summary_by_hand():
    runs = [
        _run('progressive', 0, REF),  # the stand-alone order: tau 1
        _run('progressive', 1, [80, 78, 75, 60, 70, 10]),  # one discordant pair
        _run('uniform', 0, [70, 75, 78, 80, 60, 10]),
        _run('uniform', 1, REF),
    ]
    res = nas_supernet.summarize(runs, _alone(REF), bootstrap=200, groups=2)
    assert res['n'] == 6 and res['n_connected'] == 5
    taus = {(r['method'], r['seed']): r for r in res['runs']}
    # 15 pairs; one discordant: (14 - 1) / 15; connected: 10 pairs, (9 - 1) / 10
    assert taus['progressive', 1]['tau'] == pytest.approx(13 / 15)
    assert taus['progressive', 1]['tau_connected'] == pytest.approx(0.8)
    # uniform seed 0 reverses the first four: 6 discordant pairs of 15 / 10
    assert taus['uniform', 0]['tau'] == pytest.approx(3 / 15)
    assert taus['uniform', 0]['tau_connected'] == pytest.approx(-0.2)
    prog = res['methods']['progressive']
    assert prog['seeds'] == [0, 1]
    assert prog['tau'] == pytest.approx([1, 13 / 15])
    assert prog['mean']['tau'] == pytest.approx((1 + 13 / 15) / 2)
    assert prog['std']['tau'] == pytest.approx(np.std([1, 13 / 15], ddof=1))
    gap = res['gap']
    assert gap['seeds'] == [0, 1]
    assert gap['per_seed'] == pytest.approx([1 - 3 / 15, 13 / 15 - 1])
    assert gap['positive_seeds'] == [0]
    assert gap['mean'] == pytest.approx((12 / 15 - 2 / 15) / 2)
    lo, hi = gap['ci95']
    assert lo <= hi and 0 < gap['bootstrap'] <= 200
    assert 'reference' not in res
    # 2 cost groups: only the all-3x3 cell is above the median live conv cost;
    # uniform seed 0, same-group pairs: 7 concordant, 3 discordant; the 5
    # cross pairs (with the all-3x3 cell): 2 concordant, 3 discordant
    groups = [branch_of(SPACE.from_str(k), cost_groups(2)) for k in ARCHS]
    assert groups == [1, 0, 0, 0, 0, 0]
    assert taus['uniform', 0]['conc_same'] == pytest.approx(0.4)
    assert taus['uniform', 0]['conc_cross'] == pytest.approx(-0.2)
    # against the NB201 CIFAR-10 table of the same six cells
    c10 = [NB201Table().accuracy(SPACE.from_str(k)) for k in ARCHS]
    assert res['tau_standalone_vs_nb201'] == pytest.approx(
        stats.kendalltau(REF, c10)[0]
    )
    assert taus['uniform', 0]['tau_nb201_c10'] == pytest.approx(
        stats.kendalltau(runs[2]['accs'], c10)[0]
    )


def test_summary_reference_noise_and_one_method():
    other = _alone([79.0, 80.0, 75.0, 70.0, 60.0, 10.0], seed=1)
    del other[ARCHS[3]]  # the repeat covers a subset
    res = nas_supernet.summarize([_run('uniform', 0, REF)], _alone(REF), other)
    assert 'gap' not in res and res['methods']['uniform']['std']['tau'] == 0.0
    ref = res['reference']
    assert ref['n'] == 5 and ref['seeds'] == [0, 1]
    assert ref['tau'] == pytest.approx(8 / 10)  # 10 pairs, one swapped
    assert ref['tau_connected'] == pytest.approx(4 / 6)
    # the repeat lacks one architecture: no ranking against it
    assert 'tau_repeat' not in res['runs'][0]


def test_summary_against_a_full_repeat():
    rep = [79.0, 80.0, 75.0, 70.0, 60.0, 10.0]
    run = [80.0, 78.0, 70.0, 75.0, 60.0, 10.0]  # 3rd and 4th swapped
    res = nas_supernet.summarize([_run('uniform', 0, run)], _alone(REF), _alone(rep))
    r = res['runs'][0]
    assert r['tau_repeat'] == pytest.approx(11 / 15)  # 2 discordant pairs of 15
    # mean reference 79.5, 79, 75, 70, 60, 10: the run's one swap is discordant
    assert r['tau_mean_reference'] == pytest.approx(13 / 15)
    assert res['methods']['uniform']['mean']['tau_repeat'] == r['tau_repeat']


def test_summary_rejects_another_sample():
    runs = [_run('uniform', 0, REF), dict(_run('uniform', 1, REF), archs=ARCHS[::-1])]
    with pytest.raises(ValueError, match='uniform seed 1: another architecture'):
        nas_supernet.summarize(runs, _alone(REF))


def test_standalone_cache_refuses_another_seed(tmp_path):
    cache = tmp_path / 'alone.jsonl'
    cache.write_text(json.dumps(_alone(REF, seed=1)[ARCHS[0]]) + '\n')
    args = argparse.Namespace(standalone=str(cache), standalone_steps=200, seed=0)
    with pytest.raises(ValueError, match=r'\(steps, seed\) \[\(200, 1\)\], not'):
        nas_supernet.standalone(args, [], SPACE, None, None, None, None)


def test_summary_command(tmp_path, monkeypatch, capsys):
    cache, repeat = tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    cache.write_text(''.join(json.dumps(r) + '\n' for r in _alone(REF).values()))
    repeat.write_text(
        ''.join(json.dumps(r) + '\n' for r in _alone(REF, seed=1).values())
    )
    files = []
    for method, seed in [('uniform', 0), ('progressive', 0)]:
        files.append(tmp_path / f'{method}{seed}.json')
        files[-1].write_text(json.dumps(_run(method, seed, REF)))
    out = tmp_path / 'summary.json'
    argv = ['nas_supernet.py', '--method', 'summary', '--standalone', str(cache)]
    argv += ['--standalone-repeat', str(repeat), '--bootstrap', '50']
    argv += ['--json', str(out), '--runs'] + [str(f) for f in files]
    monkeypatch.setattr(sys, 'argv', argv)
    nas_supernet.main()
    res = json.load(open(out))
    assert res['gap']['per_seed'] == [0.0]
    assert res['reference']['tau'] == pytest.approx(1.0)
    assert res['runs_files'] == [str(f) for f in files]
    assert 'progressive - uniform: +0.000' in capsys.readouterr().out
    monkeypatch.setattr(sys, 'argv', ['nas_supernet.py', '--method', 'summary'])
    with pytest.raises(SystemExit):
        nas_supernet.main()
