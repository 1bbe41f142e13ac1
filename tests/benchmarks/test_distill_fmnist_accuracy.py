"""The bookkeeping of benchmarks/distill_fmnist_accuracy.py: the table's gains
over the CE student (of the means and seed by seed), the device column, the
command it states, and the recipe checks of ``--converged`` / ``--jobs``."""

import argparse
import os
import sys

import pytest

from ..e2e.runs import load_script

bench = load_script('benchmarks', 'distill_fmnist_accuracy.py')


def _args(tmp_path, **kwargs):
    args = dict(
        seeds=[0, 1],
        epochs=15,
        teacher_epochs=None,
        subset=0,
        converged=True,
        methods=['CE student', 'KD'],
        jobs=2,
        out=str(tmp_path / 'page.md'),
    )
    args.update(kwargs)
    return argparse.Namespace(**args)


def test_table_gains_per_seed_and_device(tmp_path):
    args = _args(tmp_path)
    runs = [
        dict(method='teacher', seed=0, top1=93.5, train_s=10, device='NVIDIA H200'),
        dict(method='CE student', seed=0, top1=92.0, train_s=4, device='CPU'),
        dict(method='CE student', seed=1, top1=91.0, train_s=6, device='CPU'),
        # seed 1 finished first: the per-seed gain pairs seeds, not positions
        dict(method='KD', seed=1, top1=92.5, train_s=8, device='CPU'),
        dict(method='KD', seed=0, top1=92.3, train_s=12),  # recorded without one
    ]
    results = {}
    for run in runs:
        results.setdefault(run['method'], []).append(run)
    bench.write_table(results, args)
    text = open(args.out).read()
    # CE mean 91.5; KD mean 92.4 (+0.9); per seed +1.50 (seed 1), +0.30 (seed 0)
    assert (
        '| KD | 92.40 ± 0.14 | +0.90 | +1.50, +0.30 | 1, 0 | 92.50, 92.30 | 10 | '
        'CPU, not recorded |'
    ) in text
    assert '| CE student | 91.50 ± 0.71 |  |  | 0, 1 | 92.00, 91.00 | 5 | CPU |' in text
    assert '| teacher | 93.50 ± 0.00 |  |  | 0 | 93.50 | 10 | NVIDIA H200 |' in text
    assert "--seeds 0 1 --converged --methods 'CE student' 'KD' --jobs 2 --out " in text
    assert 'the converged teacher of `benchmarks/fmnist_converged.py`' in text
    assert '2 runs at once' in text


def test_table_grown_with_resume_names_it_whole(tmp_path):
    # invoked last for one method and seed 0; the table holds 3 CE seeds
    args = _args(tmp_path, seeds=[0], methods=['DIST'], jobs=1)
    runs = [
        dict(method='teacher', seed=0, top1=93.5, train_s=10),
        dict(method='CE student', seed=0, top1=92.0, train_s=4),
        dict(method='CE student', seed=1, top1=93.0, train_s=4),
        dict(method='CE student', seed=2, top1=94.0, train_s=4),
        dict(method='DIST', seed=0, top1=92.5, train_s=8),
    ]
    results = {}
    for run in runs:
        results.setdefault(run['method'], []).append(run)
    bench.write_table(results, args)
    text = open(args.out).read()
    # DIST (seed 0 only) gains +0.5 over CE seed 0, not -0.5 against CE's 3-seed mean
    assert '| DIST | 92.50 ± 0.00 | +0.50 | +0.50 | 0 | 92.50 | 8 |' in text
    assert "--seeds 0 1 2 --converged --methods 'CE student' 'DIST' --out " in text


def test_short_schedule_table_states_its_recipe(tmp_path):
    args = _args(
        tmp_path,
        converged=False,
        epochs=4,
        teacher_epochs=12,
        subset=5000,
        jobs=1,
        methods=list(bench.METHODS),
    )
    results = {'CE student': [dict(method='CE student', seed=0, top1=66.0, train_s=1)]}
    bench.write_table(results, args)
    text = open(args.out).read()
    # the command names the table's own seeds and methods
    assert (
        "--seeds 0 --epochs 4 --teacher-epochs 12 --subset 5000 --methods 'CE student' "
        '--out ' in text
    )
    assert 'class-balanced 5000-image subset' in text and 'one run at a time' in text
    assert '--jobs' not in text


@pytest.mark.parametrize(
    'extra, wrong',
    [
        (['--subset', '5000'], '--subset 5000'),
        (['--epochs', '4'], '--epochs 4'),
        (['--teacher-epochs', '12'], '--teacher-epochs 12'),
    ],
)
def test_converged_refuses_another_recipe(monkeypatch, capsys, extra, wrong):
    monkeypatch.setattr(sys, 'argv', ['bench', '--converged'] + extra)
    with pytest.raises(SystemExit):
        bench.main()
    err = capsys.readouterr().err
    assert "converged configs' 15 epochs" in err and wrong in err


def test_jobs_must_be_positive(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['bench', '--jobs', '0'])
    with pytest.raises(SystemExit):
        bench.main()
    assert '--jobs must be at least 1, got 0' in capsys.readouterr().err


def test_omp_threads_split_over_the_jobs(monkeypatch, tmp_path):
    """With --jobs the runs share the cores instead of each taking all."""
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(os, 'cpu_count', lambda: 16)
    monkeypatch.setattr(
        sys,
        'argv',
        ['bench', '--jobs', '4', '--seeds', '0', '--methods', 'KD', '--resume'],
    )
    # stop before any training: the pool is where the work would start
    monkeypatch.setattr(bench, 'ProcessPoolExecutor', _Stop)
    with pytest.raises(_Stopped):
        bench.main()
    assert os.environ['OMP_NUM_THREADS'] == '4'


class _Stopped(Exception):
    """Raised where the benchmark would start its process pool."""


class _Stop:
    def __init__(self, *args, **kwargs):
        raise _Stopped
