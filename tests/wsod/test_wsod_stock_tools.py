"""OICR + CASD through mmdet's stock ``tools/train.py`` and ``tools/test.py``
(``custom_imports``) on a tiny generated scene root: the image-level classifier
trained first, its backbone loaded by the OICR + CASD run (``load_from``),
image-level labels in training, VOC mAP, CorLoc and image-level mAP on the
validation images."""

import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmcompress.datasets.scenes import generate_scenes, point_config_at_scenes
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO_ROOT, 'configs', 'wsod', 'mmdet')


def _run(tool, *args):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, stock_tool('mmdet', tool), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _short_config(name, data_root, tmp_path, **options):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    point_config_at_scenes(cfg, data_root)
    shrink_data(cfg, batch_size=2)
    shorten_schedule(cfg, iters=2, log_interval=1, param_scheduler=[])
    cfg.merge_from_dict(options)
    path = str(tmp_path / name)
    cfg.dump(path)
    return path


def _last_record(work_dir):
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars[0]) as handle:
        return [json.loads(line) for line in handle if line.strip()][-1]


@pytest.mark.slow
def test_oicr_casd_trains_and_tests_with_stock_tools(tmp_path):
    data_root = str(tmp_path / 'det')
    generate_scenes('det', data_root, seed=0, num_train=4, num_val=4)
    classifier = _short_config('imgcls_r18-w32_scenes.py', data_root, tmp_path)
    cls_dir = str(tmp_path / 'cls')
    log = _run('train', classifier, '--work-dir', cls_dir)
    assert 'loss_cls' in log and 'wsod/cls_mAP' in _last_record(cls_dir)
    config_path = _short_config(
        'oicr-casd_r18-w32-clsinit_scenes.py',
        data_root,
        tmp_path,
        load_from=osp.join(cls_dir, 'iter_2.pth'),
    )
    work_dir = str(tmp_path / 'work')
    log = _run('train', config_path, '--work-dir', work_dir)
    # the classifier's backbone is loaded, its fc left out
    assert 'Load checkpoint from' in log and 'unexpected key' in log and 'fc.' in log
    assert 'loss_casd_iw' in log and 'loss_casd_lw' in log
    assert {'pascal_voc/mAP', 'wsod/CorLoc', 'wsod/cls_mAP'} <= set(
        _last_record(work_dir)
    )
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    log = _run('test', config_path, checkpoint, '--work-dir', str(tmp_path / 'test'))
    assert 'wsod/CorLoc' in log and 'pascal_voc/mAP' in log


@pytest.mark.slow
def test_midn_cell_stream_starts_from_a_classifier_fc_with_stock_tool(tmp_path):
    import torch

    from mmcompress.utils.safe_load import safe_torch_load

    data_root = str(tmp_path / 'det')
    generate_scenes('det', data_root, seed=0, num_train=4, num_val=4)
    torch.manual_seed(0)
    fc = dict(weight=torch.randn(10, 64), bias=torch.randn(10))
    classifier = str(tmp_path / 'classifier.pth')
    torch.save(dict(state_dict={f'fc.{k}': v for k, v in fc.items()}), classifier)
    config_path = _short_config(
        'oicr_r18-w32_scenes.py',
        data_root,
        tmp_path,
        model=dict(head=dict(cell_streams=('cls',), cell_init=classifier)),
        # lr 0: the saved stream is the one init_weights started from
        optim_wrapper=dict(optimizer=dict(lr=0.0)),
    )
    work_dir = str(tmp_path / 'work')
    _run('train', config_path, '--work-dir', work_dir)
    assert 'wsod/CorLoc' in _last_record(work_dir)
    state = safe_torch_load(osp.join(work_dir, 'iter_2.pth'), map_location='cpu')
    for key, value in fc.items():
        assert torch.equal(state['state_dict'][f'head.midn_cls.{key}'], value)
    assert state['state_dict']['head.midn_det.weight'].shape == (10, 128)
