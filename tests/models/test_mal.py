"""MAL: feature depression mask, ratio / top-k schedules, the explicit
selection's bag loss, the detector's training path and the hook."""

import math
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip('mmdet')
from mmdet.structures import DetDataSample  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from mmcompress.models.detectors import (  # noqa: E402
    REFLECTED_STEP_RATIOS,
    MALScheduleHook,
    depress_feature,
    depression_mask,
    linear_topk,
    reflected_step_ratio,
)
from mmcompress.registry import MODELS  # noqa: E402


def test_depression_mask_hand_computed():
    # 1 image, 2 channels, 2x2: channel means 2.5 and 1.0
    feature = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[2.0, 0.0], [1.0, 1.0]]]])
    # cam = 2.5 * c0 + 1.0 * c1 = [[4.5, 5.0], [8.5, 11.0]]
    assert depression_mask(feature, 0.0).flatten().tolist() == [1, 1, 1, 1]
    # int(4 * 0.3) = 1: the single highest position (11.0) is depressed
    assert depression_mask(feature, 0.3).flatten().tolist() == [1, 1, 1, 0]
    # int(4 * 0.5) = 2: 11.0 and 8.5
    assert depression_mask(feature, 0.5).flatten().tolist() == [1, 1, 0, 0]
    out = depress_feature(feature, 0.5)
    expected = feature.clone()
    expected[..., 1, :] /= 4  # (3 F mask + F) / 4 on the depressed row
    assert torch.allclose(out, expected)
    # per image, and without gradient through the mask
    batch = torch.stack([feature[0], -feature[0]]).requires_grad_()
    depress_feature(batch, 0.5).sum().backward()
    assert set(batch.grad.unique().tolist()) == {0.25, 1.0}


def test_depression_bad_input():
    with pytest.raises(ValueError, match=r'in \[0, 1\)'):
        depression_mask(torch.zeros(1, 1, 2, 2), 1.0)
    with pytest.raises(ValueError, match='N x C x H x W'):
        depression_mask(torch.zeros(2, 2), 0.1)


def test_reflected_step_schedule_hand_computed():
    # 24 iterations: two per part
    got = [reflected_step_ratio(i, 24) for i in range(24)]
    assert got == [r for r in REFLECTED_STEP_RATIOS for _ in range(2)]
    assert REFLECTED_STEP_RATIOS == (
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.5,
        0.4,
        0.3,
        0.2,
        0.1,
        0.0,
    )
    # 1000 iterations: part k covers [1000k/12, 1000(k+1)/12)
    assert reflected_step_ratio(83, 1000) == 0.0
    assert reflected_step_ratio(84, 1000) == 0.1
    assert reflected_step_ratio(500, 1000) == 0.5
    assert reflected_step_ratio(999, 1000) == 0.0
    assert linear_topk(0, 11, 40, 1) == 40
    assert linear_topk(10, 11, 40, 1) == 1
    assert linear_topk(5, 11, 40, 1) == round(40 - 39 * 0.5)


def _head_cfg(**kwargs):
    return dict(
        type='MALFreeAnchorHead',
        num_classes=3,
        in_channels=16,
        stacked_convs=1,
        feat_channels=16,
        pre_anchor_topk=4,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=1,
            ratios=[1.0],
            strides=[8, 16, 32],
        ),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_bbox=dict(type='SmoothL1Loss', beta=0.11, loss_weight=0.75),
        **kwargs,
    )


def test_explicit_selection_bag_loss_hand_computed():
    with DefaultScope.overwrite_default_scope('mmdet'):
        mean_max = MODELS.build(_head_cfg())
        topk = MODELS.build(_head_cfg(selection='topk', selection_topk=2))
    cls_prob = torch.tensor([[0.9, 0.5, 0.1, 0.2]])
    box_prob = torch.ones(1, 4)
    # top-2 of the bag: mean(0.9, 0.5) = 0.7 -> alpha * -log(0.7)
    assert topk.positive_bag_loss(cls_prob, box_prob).item() == pytest.approx(
        0.5 * -math.log(0.7), rel=1e-6
    )
    # Mean-max: weights 1/(1-p) normalised
    w = torch.tensor([10.0, 2.0, 1 / 0.9, 1 / 0.8])
    bag = float((w * cls_prob[0]).sum() / w.sum())
    assert mean_max.positive_bag_loss(cls_prob, box_prob).item() == pytest.approx(
        0.5 * -math.log(bag), rel=1e-6
    )
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(ValueError, match="'mean_max' or 'topk'"):
            MODELS.build(_head_cfg(selection='max'))
        with pytest.raises(ValueError, match='selection_topk'):
            MODELS.build(_head_cfg(selection='topk', selection_topk=5))


def _mal_detector(bbox_head=None, **kwargs):
    return dict(
        type='MALRetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=8,
            num_stages=4,
            out_indices=(1, 2, 3),
            style='pytorch',
        ),
        neck=dict(
            type='FPN',
            in_channels=[16, 32, 64],
            out_channels=16,
            start_level=0,
            num_outs=3,
        ),
        bbox_head=bbox_head or _head_cfg(),
        train_cfg=dict(
            assigner=dict(
                type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0
            ),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        test_cfg=dict(
            nms_pre=100,
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=10,
        ),
        **kwargs,
    )


def _samples():
    meta = dict(
        img_shape=(64, 64),
        ori_shape=(64, 64),
        pad_shape=(64, 64),
        batch_input_shape=(64, 64),
        scale_factor=(1.0, 1.0),
    )
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 6.0, 40.0, 50.0]]), labels=torch.tensor([1])
    )
    return [sample]


def test_mal_loss_sees_depressed_features_and_predict_does_not():
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        model = MODELS.build(_mal_detector(depression_ratio=0.3))
    model.init_weights()
    model.train()
    inputs = torch.randn(1, 3, 64, 64)
    samples = _samples()
    losses = model.loss(inputs, samples)
    feats = [depress_feature(f, 0.3) for f in model.extract_feat(inputs)]
    expected = model.bbox_head.loss(tuple(feats), samples)
    plain = model.bbox_head.loss(model.extract_feat(inputs), samples)
    for key in ('positive_bag_loss', 'negative_bag_loss'):
        assert losses[key].item() == pytest.approx(expected[key].item(), rel=1e-5)
    assert losses['negative_bag_loss'].item() != pytest.approx(
        plain['negative_bag_loss'].item(), rel=1e-5
    )
    model.eval()
    with torch.no_grad():
        out = model(inputs, samples, mode='tensor')
        ref = model.bbox_head(model.extract_feat(inputs))
    assert torch.equal(out[0][0], ref[0][0])
    with (
        DefaultScope.overwrite_default_scope('mmdet'),
        pytest.raises(ValueError, match='depression ratio'),
    ):
        MODELS.build(_mal_detector(depression_ratio=1.5))


def test_schedule_hook_sets_ratio_and_topk():
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(_mal_detector(bbox_head=_head_cfg(selection='topk')))
    hub = MessageHub.get_instance('test_mal_hook')
    hook = MALScheduleHook(selection_topk=(4, 1))
    # top-k: round(4 - 3 * it / 23); ratio: part it * 12 // 24
    for it, ratio, topk in (
        (0, 0.0, 4),
        (6, 0.3, 3),
        (11, 0.5, 3),
        (16, 0.3, 2),
        (23, 0.0, 1),
    ):
        runner = SimpleNamespace(model=model, iter=it, max_iters=24, message_hub=hub)
        hook.before_train_iter(runner, 0)
        assert model.depression_ratio == ratio
        assert model.bbox_head.selection_topk == topk
        assert hub.get_scalar('train/depression_ratio').current() == ratio
    with pytest.raises(ValueError, match=r'in \[0, 1\)'):
        MALScheduleHook(ratios=(0.1, 1.0))
    with pytest.raises(ValueError, match='selection_topk'):
        MALScheduleHook(selection_topk=(0, 1))
    plain = SimpleNamespace(
        model=torch.nn.Linear(1, 1), iter=0, max_iters=2, message_hub=hub
    )
    with pytest.raises(TypeError, match='MALRetinaNet'):
        hook.before_train_iter(plain, 0)


MAL_CONFIGS = [
    'configs/mal/mmdet/mal_retinanet_r18-w16_scenes.py',
    'configs/mal/mmdet/mal-topk_retinanet_r18-w16_scenes.py',
    'configs/mal/mmdet/mal_retinanet_r50_fpn_1x_coco.py',
]


@pytest.mark.parametrize('config', MAL_CONFIGS)
def test_mal_configs_build(config):
    """The scenes configs and the COCO recipe build (the recipe's ImageNet
    backbone is only loaded by init_weights, which is not called here)."""
    import os.path as osp

    from mmengine.config import Config

    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, config))
    assert cfg.default_scope == 'mmdet'
    assert 'mmcompress' in cfg.custom_imports.imports
    assert [h.type for h in cfg.custom_hooks] == ['MALScheduleHook']
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'MALRetinaNet'
    head = model.bbox_head
    assert (head.pre_anchor_topk, head.bbox_thr, head.alpha, head.gamma) == (
        40,
        0.6,
        0.5,
        2.0,
    )
    assert head.init_cfg['override']['bias_prob'] == 0.02
    assert head.selection == ('topk' if 'topk' in config else 'mean_max')
