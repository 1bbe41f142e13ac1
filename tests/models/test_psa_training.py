"""Stock mmseg / mmpose ``tools/train.py`` and ``tools/test.py`` on the PSA scenes
configs: a short training whose loss falls, then the stock test tool on its
checkpoint (the PSA weights are saved and loaded back by the stock tools)."""

import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmcompress.datasets.scenes import generate_scenes, point_config_at_scenes
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool
from tests.e2e.runs import REPO, run_tool, scalars

ITERS = 30
CASES = [
    (
        'pose',
        'mmpose',
        'configs/psa/mmpose/topdown_heatmap_r18-w16-psa-p_scenes.py',
        'coco/AP',
    ),
    ('seg', 'mmseg', 'configs/psa/mmseg/fcn_r18-w16-psa-s_scenes.py', 'mIoU'),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    'task, package, config, metric', CASES, ids=[c[0] for c in CASES]
)
def test_psa_scenes_config_trains_and_tests_with_stock_tools(
    tmp_path, task, package, config, metric
):
    data_root = str(tmp_path / task)
    generate_scenes(task, data_root, seed=0, num_train=16, num_val=8)
    cfg = Config.fromfile(osp.join(REPO, config))
    point_config_at_scenes(cfg, data_root)
    shorten_schedule(cfg, iters=ITERS, log_interval=5, param_scheduler=[])
    shrink_data(cfg, batch_size=4)
    cfg.randomness = dict(seed=0)
    short = str(tmp_path / 'short.py')
    cfg.dump(short)
    work_dir = str(tmp_path / 'work')
    run_tool(stock_tool(package), [short, '--work-dir', work_dir])
    losses = [r['loss'] for r in scalars(work_dir) if 'lr' in r]
    assert len(losses) >= ITERS // 5 and losses[-1] < losses[0], losses
    checkpoint = osp.join(work_dir, f'iter_{ITERS}.pth')
    assert osp.isfile(checkpoint)
    test_dir = str(tmp_path / 'test')
    proc = run_tool(
        stock_tool(package, 'test'), [short, checkpoint, '--work-dir', test_dir]
    )
    log = proc.stdout + proc.stderr
    assert metric in log
    assert 'not in the checkpoint' not in log  # the PSA weights were saved
    assert glob.glob(osp.join(test_dir, '*', '*.log'))
