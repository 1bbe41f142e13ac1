"""Every PSA model config builds its model, which runs one forward with PSA where
the config says (scenes configs, model-zoo recipes, the PSA teacher)."""

import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcompress.models.plugins import PolarizedSelfAttention
from mmcompress.registry import MODELS
from tests.e2e.runs import REPO

ALL_CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', 'psa', '**', '*.py'), recursive=True)
)
# the pose KD recipes with a PSA teacher (DistillModel: the teacher is built
# outside the module tree) are built and run in tests/distill/test_dwpose.py
# and by tests/test_configs.py
KD_CONFIGS = [
    p
    for p in ALL_CONFIGS
    if Config.fromfile(osp.join(REPO, p)).model.get('type') == 'DistillModel'
]
PSA_CONFIGS = [p for p in ALL_CONFIGS if p not in KD_CONFIGS]
# smaller inputs than the recipes' crops keep the CPU forward short
INPUTS = dict(mmseg=(1, 3, 64, 128), mmpose=(1, 3, 64, 64))


def build_model(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    return cfg, model


def test_all_psa_configs_are_collected():
    assert len(PSA_CONFIGS) == 10, PSA_CONFIGS
    assert len(KD_CONFIGS) == 5, KD_CONFIGS


@pytest.mark.parametrize('config', PSA_CONFIGS)
def test_psa_config_builds_and_runs_one_forward(config):
    cfg, model = build_model(config)
    psas = [m for m in model.modules() if isinstance(m, PolarizedSelfAttention)]
    assert psas, f'{config} builds no PolarizedSelfAttention'
    mode = 'sequential' if '-psa-s' in config else 'parallel'
    assert {m.mode for m in psas} == {mode}
    assert {m.impl for m in psas} == {'official'}
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(INPUTS[cfg.default_scope]), None, mode='tensor')
    out = out if isinstance(out, torch.Tensor) else out[-1]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    'psa_config, baseline',
    [
        (
            'configs/psa/mmseg/fcn_r18-w16-psa-p_scenes.py',
            'configs/baselines/mmseg/fcn_r18-w16_scenes.py',
        ),
        (
            'configs/psa/mmpose/topdown_heatmap_r18-w16-psa-s_scenes.py',
            'configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py',
        ),
        (
            'configs/psa/mmpose/td-hm_hrnet-w32-psa-p_udp-8xb64-210e-256x192_coco.py',
            None,
        ),
    ],
)
def test_psa_model_is_the_baseline_plus_psa(psa_config, baseline):
    """Removing the PSA keys gives exactly the baseline's (or base recipe's) keys."""
    cfg, model = build_model(psa_config)
    if baseline is None:  # the model-zoo base config the recipe inherits
        cfg.model.backbone.type = 'HRNet'
        cfg.model.backbone.pop('plugins')
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            plain = MODELS.build(cfg.model)
    else:
        plain = build_model(baseline)[1]
    keys = {k for k in model.state_dict() if '.psa.' not in k}
    assert keys == set(plain.state_dict())
    assert len(model.state_dict()) > len(keys)


def test_distillation_from_a_psa_teacher_to_a_plain_student():
    config = 'configs/distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py'
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.teacher.checkpoint = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    teacher = model.teachers['teacher']
    assert type(teacher.backbone).__name__ == 'PosePSAResNet'
    assert any(isinstance(m, PolarizedSelfAttention) for m in teacher.modules())
    assert type(model.student.backbone).__name__ == 'ResNet'
    assert not any(
        isinstance(m, PolarizedSelfAttention) for m in model.student.modules()
    )
