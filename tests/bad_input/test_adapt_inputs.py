"""BiSMAP domain-adaptation mistakes: GMM arguments, features, target labels."""

import os

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope

from mmcompress.adapt import fit_class_gmms
from mmcompress.adapt.datasets import UDAPairDataset, UnlabeledTargetDataset
from mmcompress.adapt.hooks import PseudoLabelHook

FEATS = torch.randn(20, 3)


def write_image_folder(root, names=('a.png', 'b.png')):
    os.makedirs(root / 'images', exist_ok=True)
    import cv2

    for name in names:
        cv2.imwrite(str(root / 'images' / name), np.zeros((8, 8, 3), np.uint8))


def test_gmm_with_zero_components():
    """The GMM asked for K=0 components per class.

    Message: num_components (K) must be >= 1, got 0
    """
    with pytest.raises(ValueError, match=r'num_components \(K\) must be >= 1, got 0'):
        fit_class_gmms([FEATS], num_components=0)


def test_gmm_features_with_nan():
    """Features with NaN (e.g. an fp16 overflow) passed to the GMM fit.

    Message: 1 of 20 feature vectors contain NaN or inf
    """
    feats = FEATS.clone()
    feats[4, 1] = float('nan')
    with pytest.raises(
        ValueError, match=r'\(class 1\): 1 of 20 feature vectors contain NaN or inf'
    ):
        fit_class_gmms([FEATS, feats], num_components=2)


def test_gmm_class_with_fewer_samples_than_components():
    """A rare class with fewer sampled pixels than GMM components.

    Message: fewer samples than num_components=8 (class 1: 3)
    """
    with pytest.warns(
        UserWarning,
        match=r'fewer samples than num_components=8 \(class 1: 3\); these classes '
        'are fitted with 1 component',
    ):
        fit_class_gmms([FEATS, FEATS[:3]], num_components=8)


def test_gmm_class_without_samples():
    """A class that no source pixel was sampled for.

    Message: classes [1] have no samples: they get no model
    """
    with pytest.warns(UserWarning, match=r'classes \[1\] have no samples: they get'):
        fit_class_gmms([FEATS, torch.zeros(0, 3)], num_components=2)


def test_target_dataset_given_its_label_folder(tmp_path):
    """Target labels passed to the unlabeled target dataset (seg_map_path).

    Message: takes data_prefix=dict(img_path=...) only, got ['seg_map_path']
    """
    write_image_folder(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"takes data_prefix=dict\(img_path=...\) only, got \['seg_map_path'\]: "
        'target labels cannot be used for training',
    ):
        UnlabeledTargetDataset(
            pseudo_label_dir=str(tmp_path / 'pseudo'),
            data_root=str(tmp_path),
            data_prefix=dict(img_path='images', seg_map_path='labels'),
        )


def test_target_pseudo_label_dir_pointing_at_true_labels(tmp_path):
    """pseudo_label_dir pointed at the target's ground-truth label folder.

    Message: holds files but no pseudo_labels.json written by PseudoLabelHook
    """
    write_image_folder(tmp_path)
    os.makedirs(tmp_path / 'labels')
    (tmp_path / 'labels' / 'a.png').write_bytes(b'')
    with pytest.raises(
        ValueError, match='holds files but no pseudo_labels.json written by Pseudo'
    ):
        UnlabeledTargetDataset(
            pseudo_label_dir=str(tmp_path / 'labels'),
            data_root=str(tmp_path),
            data_prefix=dict(img_path='images'),
        )


def test_uda_pair_with_a_labelled_target_dataset(tmp_path):
    """A labelled dataset given as the UDA target.

    Message: target must be an UnlabeledTargetDataset (images with pseudo-labels only)
    """
    init_default_scope('mmseg')
    write_image_folder(tmp_path)
    labelled = dict(
        type='FashionSceneSegDataset',
        data_root=str(tmp_path),
        data_prefix=dict(img_path='images', seg_map_path='images'),
        lazy_init=True,
    )
    with pytest.raises(
        TypeError, match=r'target must be an UnlabeledTargetDataset \(images with'
    ):
        UDAPairDataset(source=labelled, target=labelled)


def test_pseudo_label_hook_unknown_method():
    """A pseudo-label method name that does not exist (e.g. 'kmeans').

    Message: method must be one of ('gmm', 'prototype', 'softmax'), got 'kmeans'
    """
    with pytest.raises(
        ValueError,
        match=r"method must be one of \('gmm', 'prototype', 'softmax'\), got 'kmeans'",
    ):
        PseudoLabelHook(source={}, target_pipeline=[], method='kmeans')


def test_pseudo_label_hook_threshold_and_coverage():
    """Both an absolute threshold and a coverage given to the pseudo-label hook.

    Message: give threshold or coverage, not both
    """
    with pytest.raises(ValueError, match='give threshold or coverage, not both'):
        PseudoLabelHook(source={}, target_pipeline=[], threshold=100, coverage=0.5)


def test_bismap_distillation_without_teacher_checkpoint():
    """The self-distillation round switched on without the previous round's model.

    Message: distill needs checkpoint=<the previous round's checkpoint>
    """
    from mmcompress.adapt import BiSMAPSegmentor

    with pytest.raises(ValueError, match=r'distill needs checkpoint=<the previous'):
        BiSMAPSegmentor(
            backbone=dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=8),
            decode_head=dict(
                type='FCNHead', in_channels=64, channels=8, num_classes=2, in_index=3
            ),
            distill=dict(weight=1.0),
        )
