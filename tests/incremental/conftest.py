"""Tiny incremental segmentors and label-map datasets for the CISS tests."""

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from PIL import Image


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Every test here builds mmseg datasets, transforms and models by their
    bare names, as a mmseg config does: run it in the mmseg scope, whatever
    scope earlier tests left current."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def tiny_segmentor_cfg(step=0, split='2-1-1', num_classes=4, **extra):
    """An ``IncrementalEncoderDecoder`` config: ResNet-18-V1c at width 8 and a
    one-conv FCN head with 8 channels, for 32x32 inputs."""
    cfg = dict(
        type='IncrementalEncoderDecoder',
        split=split,
        num_classes=num_classes,
        step=step,
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[0.0, 0.0, 0.0],
            std=[1.0, 1.0, 1.0],
            size=(32, 32),
        ),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=8,
            base_channels=8,
            num_stages=4,
            out_indices=(3,),
            norm_cfg=dict(type='BN', requires_grad=True),
        ),
        decode_head=dict(
            type='FCNHead',
            in_channels=64,
            channels=8,
            num_convs=1,
            concat_input=False,
            in_index=0,
            dropout_ratio=0.0,
            num_classes=1,
            norm_cfg=dict(type='BN', requires_grad=True),
        ),
        train_cfg=dict(),
        test_cfg=ConfigDict(mode='whole'),
    )
    cfg.update(extra)
    return cfg


def batch(n=2, seed=0):
    """Random 32x32 inputs with random labels 0-4 as mmseg data samples."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(n, 3, 32, 32, generator=generator)
    samples = []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
        label = torch.randint(0, 5, (1, 32, 32), generator=generator)
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return inputs, samples


@pytest.fixture
def label_maps(tmp_path):
    """Six 4x4 label maps (and images) with known classes, background 0,
    ignore 255, over 4 foreground classes.

    Image k holds: 0 {1}, 1 {1, 3}, 2 {2}, 3 {3}, 4 {4, 255}, 5 {3, 4}.
    """
    contents = [[1], [1, 3], [2], [3], [4, 255], [3, 4]]
    for sub in ('img', 'ann'):
        (tmp_path / sub).mkdir()
    for index, classes in enumerate(contents):
        label = np.zeros((4, 4), np.uint8)
        for position, cls in enumerate(classes):
            label[position, :2] = cls
        Image.fromarray(label).save(tmp_path / 'ann' / f'{index}.png')
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
            tmp_path / 'img' / f'{index}.png'
        )
    return dict(
        type='BaseSegDataset',
        data_root=str(tmp_path),
        data_prefix=dict(img_path='img', seg_map_path='ann'),
        img_suffix='.png',
        seg_map_suffix='.png',
        metainfo=dict(classes=('background', 'a', 'b', 'c', 'd')),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')],
    )
