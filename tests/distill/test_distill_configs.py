"""The shipped distillation configs build, with the documented structure."""

import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcompress.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', 'distill', '*', '*.py'))
    if Config.fromfile(p).model.type == 'DistillModel'
)

# entry name -> automatic adapter types (one per recorded tensor)
EXPECTED_ADAPTERS = {
    'kd_fmnist.py': {},
    'dkd_fmnist.py': {},
    'dkd-beta0.5-tau1_fmnist.py': {},
    'dist_fmnist.py': {},
    'fitnets_fmnist.py': {'hint': ['ConvBNAdapter']},
    'ickd_fmnist.py': {'ickd': ['ConvBNAdapter']},
    'pkd_retinanet_r18-w32_to_w16_scenes.py': {'fpn': ['Conv2d'] * 3},
    'cwd_retinanet_r18-w32_to_w16_scenes.py': {'fpn': ['ConvBNAdapter'] * 3},
    'pkd_gfl_r18-w32_to_w16_scenes.py': {'fpn': ['Conv2d'] * 3},
    'cwd_fcn_r18-w32_to_w16_scenes.py': {},
    'heatmap_kd_r18-w32_to_w16_scenes.py': {},
    'heatmap_kd_r18-w32-psa-p_to_w16_scenes.py': {},
    'bckd_gfl_r18-w32_to_w16_scenes.py': {},
    'klkd_gfl_r18-w32_to_w16_scenes.py': {},
    'bckd_retinanet_r18-w32_to_w16_scenes.py': {},
    'bckd_atss_r18-w32_to_w16_scenes.py': {},
    'bckd_fcos_r18-w32_to_w16_scenes.py': {},
    'bckd_gfl_r101_to_r50_fpn_1x_coco.py': {},
    'cwd_retinanet_r101_to_r50_fpn_1x_coco.py': {},
}


def _without_pretrained_backbone(config):
    """The model of a config file with its backbone's pretrained init
    removed (building a teacher without checkpoint runs its init_cfg, which
    would download ImageNet weights)."""
    from mmcompress.distill.teacher import load_model_config

    model_cfg, _ = load_model_config(config, 'teacher')
    model_cfg.backbone.pop('init_cfg', None)
    return model_cfg


def test_every_distill_config_is_listed():
    assert sorted(osp.basename(c) for c in CONFIGS) == sorted(EXPECTED_ADAPTERS)


@pytest.mark.parametrize('config', CONFIGS)
def test_distill_config_builds(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    pytest.importorskip(cfg.default_scope)
    model_cfg = cfg.model
    model_cfg.teacher.checkpoint = None  # weights do not change the build
    if cfg.train_dataloader.dataset.type == 'CocoDataset':
        # GPU-cluster recipe: pretrained backbones cannot be fetched here
        model_cfg.teacher.config = _without_pretrained_backbone(
            model_cfg.teacher.config
        )
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
    adapters = {
        name: [type(layer).__name__ for layer in adapter.layers]
        for name, adapter in model.adapters.items()
    }
    assert adapters == EXPECTED_ADAPTERS[osp.basename(config)]
    assert set(model.distill_losses) == set(cfg.model.distill)
    assert not any('teacher' in key for key in model.state_dict())
