"""The scenes PTQ configs (mmdet, mmseg, mmpose): each builds, tools/ptq.py
calibrates it on 2 generated scene images and evaluates it with the config's
test loop, and the stock downstream tools/test.py gives the same metric on
the written checkpoint. The float checkpoints are random inits: the plumbing
is what is tested (the numbers are in docs/quant/ptq.md)."""

import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmcompress.datasets.scenes import generate_scenes, point_config_at_scenes
from mmcompress.registry import MODELS
from mmcompress.testing import shrink_data, stock_tool
from tests.e2e.runs import REPO, load_script, run_tool

Q = osp.join(REPO, 'configs', 'quant')
# config, task, metric key as the stock tool logs it, W4A4 (reconstruction)
CASES = [
    ('mmdet/ptq_w8a8_retinanet_r18-w16_scenes.py', 'det', 'coco/bbox_mAP', False),
    ('mmdet/ptq_w4a4_retinanet_r18-w16_scenes.py', 'det', 'coco/bbox_mAP', True),
    ('mmseg/ptq_w8a8_fcn_r18-w16_scenes.py', 'seg', 'mIoU', False),
    ('mmseg/ptq_w4a4_fcn_r18-w16_scenes.py', 'seg', 'mIoU', True),
    ('mmpose/ptq_w8a8_topdown_heatmap_r18-w16_scenes.py', 'pose', 'coco/AP', False),
    ('mmpose/ptq_w4a4_topdown_heatmap_r18-w16_scenes.py', 'pose', 'coco/AP', True),
]


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    """Small generated scenes (48 train / 24 val images) for every task."""
    root = tmp_path_factory.mktemp('scenes')
    for task in ('det', 'seg', 'pose'):
        generate_scenes(task, str(root / task), split='small')
    return root


def small_config(config: str, root: str, path: str) -> Config:
    """``config`` pointed at the small scenes (the calibration loader too),
    written to ``path``."""
    cfg = Config.fromfile(osp.join(Q, config))
    point_config_at_scenes(cfg, root)
    cfg.ptq.calib_dataloader.dataset.data_root = root.rstrip('/') + '/'
    shrink_data(cfg, batch_size=4)
    cfg.dump(path)
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize('config,task,metric,w4', CASES, ids=[c[0] for c in CASES])
def test_scenes_ptq_config_calibrates_tests_and_matches_stock_test(
    config, task, metric, w4, scenes, tmp_path
):
    path = str(tmp_path / osp.basename(config))
    cfg = small_config(config, str(scenes / task), path)
    assert cfg.model.type == 'QuantizedModel' and cfg.ptq.num_images == 256
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model.model)
    fp, out = str(tmp_path / 'fp.pth'), str(tmp_path / 'ptq.pth')
    torch.save(dict(state_dict=model.state_dict()), fp)
    argv = [path, fp, '--out', out, '--work-dir', str(tmp_path / 'work')]
    argv += ['--num-images', '2', '--no-progress', '--test']
    if w4:
        argv += ['--iters', '2']
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        result = load_script('tools', 'ptq.py').main(argv)
    measured = float(result['test'][metric])
    assert result['calibration'] is not None
    if w4:
        # every configured unit holds quantized layers and was reconstructed
        # (pose: 8 residual blocks and the 3 head deconvolutions)
        assert len(result['units']) == dict(det=18, seg=12, pose=11)[task]
    state = torch.load(out, weights_only=True)['state_dict']
    steps = [v for k, v in state.items() if k.endswith('weight_quantizer.step')]
    assert steps and all(torch.isfinite(s).all() and (s > 0).all() for s in steps)
    if w4:
        return  # the stock-tool path is the W8A8 config's (same model code)
    package = cfg.default_scope
    proc = run_tool(
        stock_tool(package, 'test'), [path, out, '--work-dir', str(tmp_path / 'stock')]
    )
    text = proc.stdout + proc.stderr
    logged = re.findall(re.escape(metric) + r': ([\d.]+)', text)
    assert logged, text[-2000:]
    assert float(logged[-1]) == pytest.approx(measured, abs=1e-4)


def test_scenes_calibration_images_are_fixed_by_the_seed(scenes):
    """The calibration loader has no random transform: the same seed gives the
    same images (what the onnxruntime anchor of benchmarks/ptq_scenes.py relies
    on), another seed others."""
    cfg = Config.fromfile(osp.join(Q, CASES[0][0]))
    point_config_at_scenes(cfg, str(scenes / 'det'))
    loader_cfg = cfg.ptq.calib_dataloader
    loader_cfg.dataset.data_root = str(scenes / 'det') + '/'

    def first_batch(seed):
        with DefaultScope.overwrite_default_scope('mmdet'):
            batch = next(iter(Runner.build_dataloader(loader_cfg, seed=seed)))
        paths = [s.img_path for s in batch['data_samples']]
        return paths, torch.stack(batch['inputs'])

    paths0, images0 = first_batch(0)
    paths0b, images0b = first_batch(0)
    paths1, _ = first_batch(1)
    assert paths0 == paths0b and torch.equal(images0, images0b)
    assert paths0 != paths1
    assert json.dumps(loader_cfg.dataset.pipeline).count('RandomFlip') == 0
