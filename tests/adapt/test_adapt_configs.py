"""The GTA5/SYNTHIA -> Cityscapes BiSMAP recipes build; source label ids map."""

import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmcompress.adapt.datasets import MapLabelIds, pseudo_label_name
from mmcompress.registry import MODELS
from tests.e2e.runs import REPO

RECIPES = [
    'configs/adapt/mmseg/bismap_deeplabv3plus_r101-d8_gta5-to-cityscapes-512x896.py',
    'configs/adapt/mmseg/bismap_deeplabv3plus_r101-d8_synthia-to-cityscapes-512x896.py',
]


@pytest.mark.parametrize('config', RECIPES, ids=['gta5', 'synthia'])
def test_cluster_recipe_builds_deeplabv3plus_r101_bismap(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'BiSMAPSegmentor'
    assert type(model.decode_head).__name__ == 'DepthwiseSeparableASPPHead'
    assert model.backbone.depth == 101 and model.decode_head.num_classes == 19
    assert model.decode_head.conv_seg.in_channels == 512
    pair = cfg.train_dataloader.dataset
    assert (
        pair.type == 'UDAPairDataset' and pair.target.type == 'UnlabeledTargetDataset'
    )
    assert set(pair.target.data_prefix) == {'img_path'}
    hook = cfg.custom_hooks[0]
    assert hook.num_components == 8 and hook.threshold == 100.0
    assert len(hook.class_ratios) == 19
    assert cfg.val_dataloader.dataset.type == 'CityscapesDataset'
    source_only = cfg.load_from.split('/')[1]
    assert osp.isfile(osp.join(REPO, 'configs/adapt/mmseg', source_only + '.py'))


def test_map_label_ids_keeps_mapped_ids_and_ignores_the_rest():
    seg = np.array([[7, 8, 0], [33, 255, 26]], np.uint8)
    out = MapLabelIds({7: 0, 8: 1, 26: 13, 33: 18})(dict(gt_seg_map=seg))
    assert out['gt_seg_map'].tolist() == [[0, 1, 255], [18, 255, 13]]
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, :, 2] = [3, 21]
    out = MapLabelIds({3: 0, 21: 3}, channel=2)(dict(gt_seg_map=rgb))
    assert out['gt_seg_map'].tolist() == [[0, 3]]


def test_pseudo_label_name_is_the_image_stem():
    path = 'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png'
    assert pseudo_label_name(path) == 'aachen_000000_000019_leftImg8bit.png'
