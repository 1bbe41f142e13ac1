"""The VOC / ADE20K recipes (GPU cluster, not trained here) build."""

import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

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
