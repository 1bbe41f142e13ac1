"""tools/decompose.py on a Fashion-MNIST classifier config: plan, weights and
a config that rebuilds the decomposed model and loads its weights."""

import json
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import load_checkpoint, save_checkpoint

from mmcompress.decompose import DecomposedConv2d, total_flops

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs/baselines/mmpretrain/fmnist_student.py')


def _build(cfg):
    DefaultScope.get_instance(f'dec{id(cfg)}', scope_name='mmpretrain')
    return MODELS.build(cfg.model).eval()


def _tool_main():
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        from decompose import main
    finally:
        sys.path.pop(0)
    return main


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = _build(Config.fromfile(CONFIG))
    path = str(tmp_path / 'float.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), path)
    return path, model


def test_decompose_tool_writes_a_config_that_rebuilds_the_model(tmp_path, checkpoint):
    main = _tool_main()
    path, float_model = checkpoint
    out = str(tmp_path / 'out')
    result = main(
        [
            CONFIG,
            path,
            '--flops-ratio',
            '0.5',
            '--method',
            'group',
            '--shape',
            '1',
            '1',
            '28',
            '28',
            '--out-dir',
            out,
        ]
    )
    assert result['ratio'] <= 0.5 and result['layers'] > 0
    plan = json.load(open(osp.join(out, 'plan.json')))
    cfg = Config.fromfile(osp.join(out, 'fmnist_student_group_r0.5.py'))
    assert cfg.model.type == 'DecomposedModel' and cfg.model.plan == plan
    model = _build(cfg)
    load_checkpoint(model, cfg.load_from, map_location='cpu', strict=True)
    x = torch.randn(1, 1, 28, 28)
    assert total_flops(model, (x,)) == result['flops_after']
    assert sum(isinstance(m, DecomposedConv2d) for m in model.modules()) == len(plan)
    # the same model built from the float checkpoint (init from its weights)
    again = _build(cfg)
    load_checkpoint(again, path, map_location='cpu', strict=True)
    with torch.no_grad():
        torch.testing.assert_close(again(x, mode='tensor'), model(x, mode='tensor'))
        gap = (model(x, mode='tensor') - float_model(x, mode='tensor')).abs().max()
    assert gap > 0  # a real approximation at half the FLOPs


def test_decompose_tool_target_too_low_is_one_line(tmp_path, checkpoint, capsys):
    path, _ = checkpoint
    with pytest.raises(SystemExit) as exit_info:
        _tool_main()(
            [
                CONFIG,
                path,
                '--flops-ratio',
                '0.01',
                '--shape',
                '1',
                '1',
                '28',
                '28',
                '--out-dir',
                str(tmp_path / 'x'),
            ]
        )
    message = str(exit_info.value)
    assert message.startswith('decompose.py: error: FLOPs target')
    assert 'is below what the decomposition can reach' in message


def test_decompose_tool_halves_a_detector_backbone_only(tmp_path):
    # the scenes RetinaNet (mmdet): --include 'backbone.*' --flops-of selected
    config = osp.join(REPO, 'configs/baselines/mmdet/retinanet_r18-w16_scenes.py')
    cfg = Config.fromfile(config)
    DefaultScope.get_instance(f'det{id(cfg)}', scope_name='mmdet')
    torch.manual_seed(0)
    detector = MODELS.build(cfg.model).eval()
    path = str(tmp_path / 'det.pth')
    save_checkpoint(dict(state_dict=detector.state_dict()), path)
    args = [config, path, '--flops-ratio', '0.5', '--method', 'svd']
    args += ['--include', 'backbone.*', '--flops-of', 'selected']
    result = _tool_main()(
        args + ['--shape', '1', '3', '64', '64', '--out-dir', str(tmp_path / 'o')]
    )
    plan = json.load(open(osp.join(str(tmp_path / 'o'), 'plan.json')))
    assert plan and all(name.startswith('backbone.') for name in plan)
    assert 0.4 < result['selected_ratio'] <= 0.5
    # neck and head keep every FLOP: the model saves exactly what the backbone does
    saved = result['flops_before'] - result['flops_after']
    assert saved == result['selected_flops_before'] - result['selected_flops_after']
    assert result['ratio'] > result['selected_ratio']
