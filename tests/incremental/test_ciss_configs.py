"""The VOC / ADE20K recipes (GPU cluster, not trained here) build; the
scenes recipe's incremental steps get the official optimizer groups."""

import glob
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from mmcompress.incremental.split import parse_split
from mmcompress.registry import MODELS
from tests.e2e.runs import REPO

RECIPES = sorted(
    glob.glob(osp.join(REPO, 'configs', 'incremental', 'mmseg', '*_voc-*.py'))
    + glob.glob(osp.join(REPO, 'configs', 'incremental', 'mmseg', '*_ade20k-*.py'))
)


def test_recipes_cover_the_issue_settings():
    names = {osp.basename(p) for p in RECIPES}
    for family in ('voc-15-5', 'voc-15-1', 'ade20k-100-50'):
        assert f'dkd_deeplabv3_r101_{family}_step0.py' in names
        assert f'dkd_deeplabv3_r101_{family}_step1.py' in names


@pytest.mark.parametrize('path', [p for p in RECIPES if p.endswith('_step1.py')])
def test_step1_recipe_builds_a_deeplabv3_r101(path):
    cfg = Config.fromfile(path)
    model_cfg = cfg.model
    model_cfg.pretrained = None  # no download here
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg)
    steps = parse_split(cfg.model.split, cfg.model.num_classes)
    assert model.backbone.depth == 101 and model.step == 1
    norms = [m for m in model.backbone.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(m.momentum == 0.01 for m in norms)  # official backbone
    assert [h.out_channels for h in model.classifier.heads] == [1] + [
        len(s) for s in steps[:2]
    ]
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert loader.dataset.type == 'IncrementalSegDataset'
        assert (loader.dataset.split, loader.dataset.step) == (cfg.model.split, 1)
        assert 'ann_file' not in loader.dataset.dataset or 'voc' in path
    assert cfg.load_from.endswith(
        ('epoch_60.pth', 'epoch_100.pth')
    ) and cfg.load_from == 'work_dirs/{}/epoch_{}.pth'.format(
        osp.basename(path)[:-3].replace('_step1', '_step0'), cfg.train_cfg.max_epochs
    )


SGD = [
    'optim_wrapper.optimizer._delete_=True',
    'optim_wrapper.optimizer.type=SGD',
    'optim_wrapper.optimizer.lr=1e-3',
    'optim_wrapper.optimizer.momentum=0.9',
    'optim_wrapper.optimizer.nesterov=True',
    'optim_wrapper.optimizer.weight_decay=1e-4',
]


def _groups(step, options=()):
    """The optimizer of the scenes step and {parameter name: (lr, decay)}."""
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import ciss

    cfg = ciss.step_config(
        osp.join(REPO, 'configs', 'incremental', 'mmseg', SCENES), step
    )
    if options:
        args = ciss.parse_args(['x_step0.py', '--incremental-options', *options])
        cfg.merge_from_dict(args.incremental_options)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    by_id = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            by_id[id(param)] = (group['lr'], group['weight_decay'])
    named = model.named_parameters()
    return optimizer, {n: by_id[id(p)] for n, p in named if id(p) in by_id}


SCENES = 'dkd_fcn_r18-w16_scenes-6-2-2'


@pytest.mark.parametrize('step', [1, 2])
def test_scenes_incremental_steps_have_the_official_groups(step):
    """Steps >= 1 of the scenes recipe: backbone at the base lr 2e-4 without
    weight decay, decode head and old classifiers (auxiliary included) at 2e-3
    without it, the new classifier at 2e-3 with weight decay 1e-4; AdamW."""
    optimizer, groups = _groups(step)
    assert isinstance(optimizer, torch.optim.AdamW)
    expected = {
        'backbone.stem.0.weight': (2e-4, 0.0),
        'decode_head.convs.0.conv.weight': (2e-3, 0.0),
        'classifier.heads.0.weight': (2e-3, 0.0),
        f'classifier.heads.{step}.bias': (2e-3, 0.0),
        f'classifier.heads.{step + 1}.weight': (2e-3, 1e-4),
        f'classifier.heads.{step + 1}.bias': (2e-3, 1e-4),
    }
    for name, value in expected.items():
        assert groups[name] == pytest.approx(value), name


def test_scenes_official_sgd_option():
    """The documented options give the official SGD (Nesterov, momentum 0.9)
    with the same groups at base lr 1e-3."""
    optimizer, groups = _groups(2, SGD)
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(g['momentum'] == 0.9 and g['nesterov'] for g in optimizer.param_groups)
    assert groups['backbone.stem.0.weight'] == pytest.approx((1e-3, 0.0))
    assert groups['classifier.heads.2.weight'] == pytest.approx((1e-2, 0.0))
    assert groups['classifier.heads.3.weight'] == pytest.approx((1e-2, 1e-4))
