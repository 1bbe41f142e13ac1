"""benchmarks/decompose_fmnist.py --start converged: the KD fine-tune's student
is the model tools/decompose.py planned from the converged checkpoint,
initialised from that checkpoint (the same weights tools/decompose.py saved),
the teacher is that checkpoint, and the block averages the seeds."""

import argparse
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint, save_checkpoint

from ..e2e.runs import REPO, load_script

bench = load_script('benchmarks', 'decompose_fmnist.py')
decompose_tool = load_script('tools', 'decompose.py')


def _args(**kw):
    defaults = dict(
        start='converged', flops_ratio=0.5, seed=3, subset=0, epochs=2, out='x.md'
    )
    return argparse.Namespace(**(defaults | kw))


@pytest.fixture
def converged(tmp_path, monkeypatch):
    """A random-weight checkpoint of the converged teacher's architecture as
    the ``converged`` start, and tools/decompose.py's output for it."""
    cfg = Config.fromfile(osp.join(REPO, bench.STARTS['converged']['config']))
    DefaultScope.get_instance('test_dec_bench', scope_name='mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    checkpoint = str(tmp_path / 'teacher.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), checkpoint)
    monkeypatch.setitem(
        bench.STARTS,
        'converged',
        dict(bench.STARTS['converged'], checkpoint=checkpoint, work_dir=str(tmp_path)),
    )
    out = str(tmp_path / 'svd_s3')
    argv = [bench.STARTS['converged']['config'], checkpoint, '--flops-ratio', '0.5']
    argv += ['--method', 'svd', '--shape', '1', '1', '28', '28', '--out-dir', out]
    decompose_tool.main(argv)
    config = osp.join(out, 'teacher_r18-w16_fmnist55k_svd_r0.5.py')
    return checkpoint, config, out


def test_converged_kd_config_starts_from_the_converged_model(converged, tmp_path):
    checkpoint, config, out = converged
    cfg = bench.kd_config('svd', _args(), osp.relpath(config, REPO))
    assert cfg.train_dataloader.dataset.subset_size is None  # --subset 0: all 55k
    assert cfg.train_cfg.max_epochs == 2 and cfg.train_cfg.val_interval == 1
    assert cfg.randomness.seed == 3
    assert cfg.load_from == checkpoint and cfg.model.teacher.checkpoint == checkpoint
    cfg.work_dir = str(tmp_path / 'kd')
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    model = runner.model
    saved = torch.load(osp.join(out, 'decomposed.pth'), map_location='cpu')
    student = model.student.state_dict()
    assert set(student) == set(saved['state_dict'])
    for key, value in saved['state_dict'].items():
        torch.testing.assert_close(student[key], value, msg=key)
    float_model = MODELS.build(Config.fromfile(config).model['model'])
    load_checkpoint(float_model, checkpoint, map_location='cpu', strict=True)
    (teacher_model,) = model.teachers.values()
    teacher = teacher_model.state_dict()
    for key, value in float_model.state_dict().items():
        torch.testing.assert_close(teacher[key], value, msg=key)


def test_short_kd_config_keeps_the_committed_configs():
    cfg = bench.kd_config('group', _args(start='short', subset=2000), None)
    assert cfg.train_dataloader.dataset.subset_size == 2000
    student = cfg.model.student['config']
    assert student.endswith('configs/decompose/mmpretrain/group_fmnist.py')
    assert cfg.model.teacher.checkpoint == bench.BASE_CKPT


def test_seed_table_averages_the_seeds():
    def run(base, kd, seconds):
        method = dict(
            ratio=0.2,
            layers=16,
            top1_init=20.0,
            top1_kd=kd,
            val_top1=[[1, 80.0], [2, 85.5]],
            kd_seconds=seconds,
        )
        return dict(base_top1=base, svd=method)

    runs = {0: run(93.0, 90.0, 100.0), 2: run(93.0, 91.0, 120.0)}
    text = bench.seed_table(runs, _args(epochs=2, flops_ratio=0.2))
    row = next(line for line in text.splitlines() if line.startswith('| channel SVD'))
    cells = [cell.strip() for cell in row.strip('|').split('|')]
    # mean 90.5, sample std of (90, 91) = 0.7071; drop 93.0 - 90.5
    assert cells[4] == '90.50 +- 0.71' and cells[5] == '90.00, 91.00'
    assert cells[6] == '2.50' and cells[7] == '80.00, 85.50' and cells[8] == '100, 120'
    assert 'seeds 0, 2' in text and 'the 55k train split' in text
    assert 'Tucker-2' not in text  # methods without a run are left out
