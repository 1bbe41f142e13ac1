"""BCKD and MAL train with the stock mmdet tools/train.py on small generated
scenes; the BCKD-trained plain student checkpoint is evaluated by the stock
mmdet tools/test.py with the baseline student config."""

import math
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

pytest.importorskip('mmdet')
from mmcompress.datasets.scenes import (
    generate_scenes,  # noqa: E402
    point_config_at_scenes,
)
from mmcompress.models.detectors import reflected_step_ratio  # noqa: E402
from mmcompress.testing import (
    shorten_schedule,
    shrink_data,  # noqa: E402
    stock_tool,
)

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from tests.e2e.runs import REPO, run_tool, scalars  # noqa: E402

BCKD = 'configs/distill/mmdet/bckd_gfl_r18-w32_to_w16_scenes.py'
STUDENT = 'configs/baselines/mmdet/gfl_r18-w16_scenes.py'
MAL = 'configs/mal/mmdet/mal_retinanet_r18-w16_scenes.py'


@pytest.fixture(scope='module')
def det_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('scenes_det'))
    generate_scenes('det', root, split='small')
    return root


def _short(config, work_dir, data_root, iters, score_thr=None):
    """``config`` for ``iters`` iterations of batch 4 on ``data_root``,
    logging every iteration and saving at the end (teachers random)."""
    cfg = Config.fromfile(osp.join(REPO, config))
    if score_thr is not None:
        cfg.model.test_cfg.score_thr = score_thr
    point_config_at_scenes(cfg, data_root)
    if cfg.model.type == 'DistillModel':
        cfg.model.teacher.checkpoint = None
    shrink_data(cfg, batch_size=4)
    shorten_schedule(cfg, iters=iters, log_interval=1, param_scheduler=[])
    cfg.randomness = dict(seed=0)
    cfg.work_dir = work_dir
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, osp.basename(config))
    cfg.dump(path)
    return path


@pytest.mark.slow
def test_bckd_trains_and_student_tests_with_stock_tools(tmp_path, det_root):
    work = str(tmp_path / 'train')
    config = _short(BCKD, work, det_root, iters=6)
    run_tool(stock_tool('mmdet'), [config, '--work-dir', work])
    records = [r for r in scalars(work) if 'lr' in r]
    assert len(records) == 6
    for key in (
        'loss_distill_bckd_cls',
        'loss_distill_bckd_loc',
        'loss_cls',
        'loss_bbox',
    ):
        assert all(math.isfinite(r[key]) for r in records), key
    assert any(r['loss_distill_bckd_cls'] > 0 for r in records)

    # the plain student checkpoint is the student of the full checkpoint
    student_ckpt = osp.join(work, 'iter_6_student.pth')
    full = torch.load(
        osp.join(work, 'iter_6.pth'), map_location='cpu', weights_only=False
    )['state_dict']
    plain = torch.load(student_ckpt, map_location='cpu', weights_only=False)[
        'state_dict'
    ]
    assert plain and all(
        torch.equal(value, full['student.' + key]) for key, value in plain.items()
    )

    test_dir = str(tmp_path / 'test')
    # after 6 iterations no score passes 0.05: keep every detection so the
    # COCO metric is computed
    student_config = _short(STUDENT, test_dir, det_root, iters=1, score_thr=0.0)
    proc = run_tool(
        stock_tool('mmdet', 'test'),
        [student_config, student_ckpt, '--work-dir', test_dir],
    )
    assert 'coco/bbox_mAP:' in proc.stdout + proc.stderr
    assert 'unexpected key' not in (proc.stdout + proc.stderr)
    assert 'missing keys' not in (proc.stdout + proc.stderr)


@pytest.mark.slow
def test_mal_trains_with_stock_tool_and_follows_the_schedule(tmp_path, det_root):
    work = str(tmp_path)
    iters = 12
    config = _short(MAL, work, det_root, iters=iters)
    run_tool(stock_tool('mmdet'), [config, '--work-dir', work])
    records = sorted((r for r in scalars(work) if 'lr' in r), key=lambda r: r['step'])
    assert [r['step'] for r in records] == list(range(1, iters + 1))
    # 12 iterations: one per part of the reflected step
    assert [r['depression_ratio'] for r in records] == pytest.approx(
        [reflected_step_ratio(i, iters) for i in range(iters)]
    )
    assert [r['depression_ratio'] for r in records][:7] == pytest.approx(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5]
    )
    assert all(
        0 < r[key] < math.inf
        for r in records
        for key in ('positive_bag_loss', 'negative_bag_loss')
    )
