"""PISR's two stages through the stock mmpretrain tools: the teacher, then the
student distilled from it, then the plain student checkpoint tested as an
ordinary FSRCNN."""

import os.path as osp
import re

import pytest
import torch

from mmcompress.testing import stock_tool

from ..e2e.runs import metrics, run_tool

CONFIGS = 'configs/pisr/mmpretrain/'


def short(iters=3):
    return [
        '--cfg-options',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2',
        f'param_scheduler.0.T_max={iters}',
        "val_dataloader.dataset.photos=['coins']",
    ]


@pytest.mark.slow
def test_two_stages_with_the_stock_tools(tmp_path):
    train = stock_tool('mmpretrain')
    teacher_dir = str(tmp_path / 'teacher')
    run_tool(
        train,
        [CONFIGS + 'pisr_teacher_x2_photos.py', '--work-dir', teacher_dir, *short()],
    )
    teacher_ckpt = osp.join(teacher_dir, 'iter_3.pth')
    student_dir = str(tmp_path / 'student')
    proc = run_tool(
        train,
        [
            CONFIGS + 'pisr_student_x2_photos.py',
            '--work-dir',
            student_dir,
            *short(),
            f'model.teacher.checkpoint={teacher_ckpt}',
        ],
    )
    assert "Student initialised from teacher 'teacher' keys decoder.*" in proc.stdout
    assert metrics(student_dir, 'loss_distill_expanding')
    student = torch.load(
        osp.join(student_dir, 'iter_3_student.pth'), weights_only=False
    )
    assert not any(
        k.startswith(('teacher', 'distill_losses')) for k in student['state_dict']
    )
    test_dir = str(tmp_path / 'test')
    proc = run_tool(
        stock_tool('mmpretrain', 'test'),
        [
            CONFIGS + 'fsrcnn_x2_photos.py',
            osp.join(student_dir, 'iter_3_student.pth'),
            '--work-dir',
            test_dir,
            '--cfg-options',
            "test_dataloader.dataset.photos=['coins']",
        ],
    )
    psnr = re.search(r'sr/psnr: ([0-9.]+)', proc.stdout + proc.stderr)
    assert psnr and 10 < float(psnr.group(1)) < 60, proc.stdout[-2000:]
