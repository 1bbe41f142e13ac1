"""The converged Fashion-MNIST baselines: their configs (55k train split, 5k
hold-out validated every epoch, 10k test, cosine over all epochs, the tables'
architectures) and the bookkeeping of benchmarks/fmnist_converged.py (cached
runs are not trained again, curves read from mmengine's scalars.json, the
table's statistics)."""

import json
import os
import os.path as osp
import time

import pytest
from mmengine.config import Config

from ..e2e.runs import REPO, load_script

fmnist_converged = load_script('benchmarks', 'fmnist_converged.py')

BASELINES = dict(
    teacher='configs/baselines/mmpretrain/fmnist_teacher.py',
    student='configs/baselines/mmpretrain/fmnist_student.py',
)


@pytest.mark.parametrize('model', ['teacher', 'student'])
def test_config_trains_on_55k_validates_each_epoch_tests_on_10k(model):
    cfg = Config.fromfile(osp.join(REPO, fmnist_converged.CONFIGS[model]))
    splits = [
        (cfg[f'{stage}_dataloader'].dataset.split, cfg[f'{stage}_dataloader'].dataset)
        for stage in ('train', 'val', 'test')
    ]
    assert [split for split, _ in splits] == ['train', 'val', 'test']
    assert all(dataset.get('subset_size') is None for _, dataset in splits)
    assert cfg.train_cfg.val_interval == 1
    # the cosine phase ends with the training: the last epochs are the flat end
    assert cfg.param_scheduler[1].end == cfg.train_cfg.max_epochs
    # the same architecture as the tables' teacher / student
    assert cfg.model == Config.fromfile(osp.join(REPO, BASELINES[model])).model


def test_seed_zero_uses_the_stock_default_work_dir():
    assert fmnist_converged.work_dir_of('student', 0, '/r') == (
        '/r/work_dirs/student_r18-w8_fmnist55k'
    )
    assert fmnist_converged.work_dir_of('teacher', 2, '/r') == (
        '/r/work_dirs/teacher_r18-w16_fmnist55k_s2'
    )


def _write_scalars(work_dir, stamp, records):
    path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in records) + '\n')


RECORDS = [
    dict(loss=2.0, epoch=1, iter=50, step=50),
    dict(loss=1.0, epoch=1, iter=100, step=100),
    dict(**{'accuracy/top1': 80.0, 'step': 1}),
    dict(loss=0.5, epoch=2, iter=150, step=150),
    dict(**{'accuracy/top1': 85.5, 'step': 2}),
]


def test_curves_merge_the_resumed_chunks_later_chunk_wins(tmp_path):
    # chunk 1 validated epochs 1-2 and was stopped inside epoch 3
    _write_scalars(tmp_path, '20260102_000000', RECORDS + [dict(loss=9.0, epoch=3)])
    # chunk 2 resumed from epoch 2's checkpoint and trained epoch 3 again
    _write_scalars(
        tmp_path,
        '20260103_000000',
        [dict(loss=0.25, epoch=3), dict(**{'accuracy/top1': 88.0, 'step': 3})],
    )
    curves = fmnist_converged.read_curves(str(tmp_path))
    assert curves == dict(
        val_top1=[[1, 80.0], [2, 85.5], [3, 88.0]],
        train_loss=[[1, 1.5], [2, 0.5], [3, 0.25]],
    )
    assert fmnist_converged.validated_epochs(str(tmp_path)) == 3
    assert fmnist_converged.validated_epochs(str(tmp_path / 'none')) == 0


def test_missing_curves_name_the_work_dir(tmp_path):
    _write_scalars(tmp_path, '20260103_000000', RECORDS[:1])
    with pytest.raises(FileNotFoundError, match='validation record under .*val_inter'):
        fmnist_converged.read_curves(str(tmp_path))


def _fake_cache(tmp_path, model, seed, result=True):
    work_dir = fmnist_converged.work_dir_of(model, seed, str(tmp_path))
    epochs = fmnist_converged.max_epochs(model)
    os.makedirs(work_dir, exist_ok=True)
    open(osp.join(work_dir, f'epoch_{epochs}.pth'), 'w').close()
    _write_scalars(work_dir, '20260102_000000', RECORDS)
    if result:
        with open(osp.join(work_dir, 'result.json'), 'w') as f:
            json.dump(dict(model=model, seed=seed, top1=91.0), f)
    return work_dir


def _fail(*args, **kwargs):
    raise AssertionError('a cached run was trained or tested again')


def test_cached_run_is_neither_trained_nor_tested(tmp_path, monkeypatch):
    _fake_cache(tmp_path, 'student', 1)
    monkeypatch.setattr(fmnist_converged, 'train_chunk', _fail)
    monkeypatch.setattr(fmnist_converged, 'test_accuracy', _fail)
    result = fmnist_converged.run('student', 1, str(tmp_path))
    assert result == dict(model='student', seed=1, top1=91.0)


def test_checkpoint_without_result_is_tested_not_trained(tmp_path, monkeypatch):
    work_dir = _fake_cache(tmp_path, 'teacher', 0, result=False)
    monkeypatch.setattr(fmnist_converged, 'train_chunk', _fail)
    monkeypatch.setattr(fmnist_converged, 'test_accuracy', lambda cfg, ckpt: 93.456)
    result = fmnist_converged.run('teacher', 0, str(tmp_path))
    assert result['top1'] == 93.46 and 'train_s' not in result
    epochs = fmnist_converged.max_epochs('teacher')
    assert result['checkpoint'] == (
        f'work_dirs/teacher_r18-w16_fmnist55k/epoch_{epochs}.pth'
    )
    with open(osp.join(work_dir, 'result.json')) as f:
        assert json.load(f) == result
    assert 'not timed' in fmnist_converged.table([result])


def test_missing_run_is_trained_with_its_seed_and_deadline(tmp_path, monkeypatch):
    calls = []

    def fake_chunk(model, seed, work_dir, deadline):
        calls.append((model, seed, work_dir, deadline))
        _fake_cache(tmp_path, 'student', 2, result=False)
        with open(osp.join(work_dir, 'chunks.json'), 'w') as f:
            json.dump([dict(seconds=5.0)], f)

    monkeypatch.setattr(fmnist_converged, 'train_chunk', fake_chunk)
    monkeypatch.setattr(fmnist_converged, 'test_accuracy', lambda cfg, ckpt: 90.0)
    result = fmnist_converged.run('student', 2, str(tmp_path), deadline=123.0)
    work_dir = fmnist_converged.work_dir_of('student', 2, str(tmp_path))
    assert calls == [('student', 2, work_dir, 123.0)]
    assert result['chunks'] == [dict(seconds=5.0)]
    assert result['val_top1'] == [[1, 80.0], [2, 85.5]]


def test_run_stopped_before_the_last_epoch_gives_no_result(tmp_path, monkeypatch):
    monkeypatch.setattr(fmnist_converged, 'train_chunk', lambda *args: None)
    assert fmnist_converged.run('teacher', 0, str(tmp_path)) is None
    work_dir = fmnist_converged.work_dir_of('teacher', 0, str(tmp_path))
    assert not osp.exists(osp.join(work_dir, 'result.json'))


FAKE_TRAIN = """
import json, os, sys, time
work_dir = sys.argv[sys.argv.index('--work-dir') + 1]
with open(os.path.join(work_dir, 'argv.json'), 'w') as f:
    json.dump(sys.argv[1:], f)
path = os.path.join(work_dir, '20260101_000000', 'vis_data', 'scalars.json')
os.makedirs(os.path.dirname(path), exist_ok=True)
for epoch in range(1, 100):
    time.sleep(0.3)
    with open(path, 'a') as f:
        f.write(json.dumps({'accuracy/top1': 50.0, 'step': epoch}) + '\\n')
"""


def test_chunk_stops_after_the_epoch_the_next_would_overrun(tmp_path, monkeypatch):
    """A fake tools/train.py validates an epoch every 0.3 s for 30 s; with 3 s
    given, the chunk stops it at an epoch end before the deadline and records
    the epochs it trained."""
    (tmp_path / 'tools').mkdir()
    (tmp_path / 'tools' / 'train.py').write_text(FAKE_TRAIN)
    work_dir = str(tmp_path / 'run')
    os.makedirs(work_dir)
    open(osp.join(work_dir, 'last_checkpoint'), 'w').close()
    monkeypatch.setattr(fmnist_converged, 'ROOT', str(tmp_path))
    monkeypatch.setattr(fmnist_converged, 'POLL_S', 0.05)
    start = time.time()
    fmnist_converged.train_chunk('student', 3, work_dir, start + 3.0)
    assert time.time() - start < 3.3
    with open(osp.join(work_dir, 'argv.json')) as f:
        argv = json.load(f)
    assert argv[0] == fmnist_converged.CONFIGS['student']
    assert argv[-3:] == ['--resume', '--cfg-options', 'randomness.seed=3']
    with open(osp.join(work_dir, 'chunks.json')) as f:
        (chunk,) = json.load(f)
    assert chunk['epochs'][0] == 0 and 1 <= chunk['epochs'][1] <= 9
    # stopped right after a validation: no epoch was left half-trained
    time.sleep(0.5)
    assert chunk['epochs'][1] == fmnist_converged.validated_epochs(work_dir)


def _result(model, seed, top1, val):
    return dict(
        model=model,
        seed=seed,
        config=fmnist_converged.CONFIGS[model],
        checkpoint=f'work_dirs/{model}_s{seed}/epoch_3.pth',
        top1=top1,
        val_top1=val,
        train_loss=[[1, 1.0], [2, 0.5], [3, 0.25]],
        chunks=[
            dict(
                seconds=60.0,
                epochs=[1, 2],  # resumed after epoch 1, trained elsewhere
                load_before=[1, 1, 1],
                load_after=[2, 2, 2],
                device='NVIDIA H200',
            ),
            # chunks recorded before the device was: trained on the CPU
            dict(
                seconds=40.0,
                epochs=[2, 3],
                load_before=[3, 3, 3],
                load_after=[4, 4, 4],
            ),
        ],
    )


def test_table_gives_mean_and_population_std_over_seeds():
    val = [[1, 80.0], [2, 90.0], [3, 89.5]]
    results = [
        _result('student', 1, 91.0, val),
        _result('student', 0, 90.0, [[1, 70.0], [2, 88.0], [3, 88.25]]),
    ]
    text = fmnist_converged.table(results)
    # mean 90.5, population std 0.5; the curve columns are seed 0's
    assert '| 3 | 0, 1 | 90.50 ± 0.50 (90.00, 91.00) | 88.25 (3) |' in text
    assert '70.00, 88.00, 88.25 (seed 0) |' in text
    assert (
        '| student, seed 1 | `work_dirs/student_s1/epoch_3.pth` | 91.00 | 100 s in '
        '2 chunk(s) on CPU, NVIDIA H200, epochs 2-3 (load 1.00/1.00/1.00 -> '
        '2.00/2.00/2.00; '
        '3.00/3.00/3.00 -> 4.00/4.00/4.00) |'
    ) in text
    assert 'teacher' not in text


def test_record_merges_earlier_results_and_draws_the_curves(tmp_path):
    out = str(tmp_path / 'page.md')
    with open(out, 'w') as f:
        f.write('# Page\n\nhand-written text\n')
    val = [[1, 85.0], [2, 90.0], [3, 91.0]]
    fmnist_converged.record([_result('teacher', 0, 93.0, val)], out, 'cmd one')
    fmnist_converged.record([_result('teacher', 1, 94.0, val)], out, 'cmd two')
    with open(tmp_path / 'fmnist_converged.json') as f:
        assert [(r['model'], r['seed']) for r in json.load(f)] == [
            ('teacher', 0),
            ('teacher', 1),
        ]
    text = open(out).read()
    assert text.startswith('# Page\n\nhand-written text\n')
    assert 'Command: `cmd two`' in text and 'cmd one' not in text
    assert '93.50 ± 0.50 (93.00, 94.00)' in text
    assert (tmp_path / 'fmnist_converged.png').stat().st_size > 1000
