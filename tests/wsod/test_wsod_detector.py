"""OICR weakly supervised detector: pseudo-labels, losses against hand values,
view alignment for CASD, prediction, proposals, image-level labels, CorLoc."""

import math

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmcompress.models.wsod import (
    OICR,
    CorLocMetric,
    ImageLevelLabels,
    OICRHead,
    WSODProposals,
    corloc_hits,
    flip_boxes,
    oicr_pseudo_labels,
    sliding_window_proposals,
)

BOXES = torch.tensor(
    [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
)

# the stem-free first two ResNet stages, 4 and 8 channels
TINY_BACKBONE = dict(
    type='ResNet',
    depth=18,
    num_stages=2,
    base_channels=4,
    strides=(1, 2),
    dilations=(1, 1),
    out_indices=(0, 1),
    norm_eval=False,
    init_cfg=None,
)


def tiny_oicr(**kwargs):
    """A 2-class OICR on the stem-free first ResNet stage (8 channels)."""
    cfg = dict(
        type='OICR',
        backbone=TINY_BACKBONE,
        roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=1),
            out_channels=8,
            featmap_strides=[8],
        ),
        head=dict(type='OICRHead', in_channels=8, fc_channels=8, num_classes=2),
    )
    cfg.update(kwargs)
    return MMDET_MODELS.build(cfg)


def weak_sample(labels, proposals=BOXES, **meta):
    sample = DetDataSample(metainfo=dict(img_shape=(32, 32), **meta))
    sample.gt_instances = InstanceData(labels=torch.tensor(labels))
    if proposals is not None:
        sample.proposals = InstanceData(bboxes=proposals)
    return sample


def test_pseudo_labels_follow_the_top_proposal_of_each_class():
    scores = torch.tensor([[0.6, 0.1], [0.2, 0.1], [0.1, 0.7]])
    labels, weights = oicr_pseudo_labels(BOXES, scores, torch.tensor([0]))
    # seed = box 0 (0.6); box 1 overlaps it with IoU 90/110 >= 0.5, box 2 not
    assert labels.tolist() == [0, 0, 2]
    assert torch.allclose(weights, torch.full((3,), 0.6))
    labels, weights = oicr_pseudo_labels(BOXES, scores, torch.tensor([0, 1]))
    assert labels.tolist() == [0, 0, 1]
    assert torch.allclose(weights, torch.tensor([0.6, 0.6, 0.7]))
    labels, weights = oicr_pseudo_labels(
        BOXES, scores, torch.tensor([], dtype=torch.long)
    )
    assert labels.tolist() == [2, 2, 2] and weights.abs().sum() == 0


def test_head_losses_hand_values_at_uniform_scores():
    """Zero fc weights: class softmax 1/C, proposal softmax 1/R, image score
    1/C; refinement probabilities 1/(C+1), seed score 1/(C R)."""
    head = OICRHead(
        in_channels=1, roi_size=1, fc_channels=2, num_classes=2, num_refine=2
    )
    for layer in [head.midn_cls, head.midn_det, *head.refine]:
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    midn, refine = head(torch.rand(3, 1, 1, 1), [3])
    assert torch.allclose(midn[0], torch.full((3, 2), 1 / 6))
    losses = head.loss(midn, refine, [BOXES], [torch.tensor([0])])
    # BCE(0.5, 1) + BCE(0.5, 0)
    assert losses['loss_midn'].item() == pytest.approx(2 * math.log(2), rel=1e-5)
    # stream 1: weight 1/6 on every proposal, -log(1/3)
    assert losses['loss_refine1'].item() == pytest.approx(math.log(3) / 6, rel=1e-5)
    # stream 2: seeds from stream 1 (score 1/3)
    assert losses['loss_refine2'].item() == pytest.approx(math.log(3) / 3, rel=1e-5)


def test_views_map_proposals_onto_the_same_image_content():
    model = tiny_oicr()
    image = torch.rand(1, 3, 32, 48)
    boxes = [torch.tensor([[4.0, 8.0, 20.0, 24.0]])]
    assert flip_boxes(boxes[0], 48).tolist() == [[28.0, 8.0, 44.0, 24.0]]
    flipped, flipped_boxes = model.view(image, boxes, 1.0, True)
    assert torch.equal(flipped, image.flip(-1))
    small, small_boxes = model.view(image, boxes, 0.5, False)
    assert small.shape[-2:] == (16, 24)
    assert small_boxes[0].tolist() == [[2.0, 4.0, 10.0, 12.0]]
    # RoI features of the flipped box on the flipped map are the mirrored
    # features of the box on the map: what CASD-IW's flip alignment assumes
    feats = (torch.rand(1, 8, 4, 6),)
    plain = model.rois(feats, boxes)
    mirror = model.rois((feats[0].flip(-1),), flipped_boxes)
    assert torch.allclose(mirror, plain.flip(-1), atol=1e-5)


def test_training_losses_and_casd_terms(deterministic):
    plain = tiny_oicr(view_scales=(1.0, 0.5), view_flip=True)
    assert plain.views == [(1.0, False), (1.0, True), (0.5, False), (0.5, True)]
    samples = [weak_sample([0]), weak_sample([1, 0])]
    losses = plain.loss(torch.rand(2, 3, 32, 32), samples)
    assert set(losses) == {'loss_midn', 'loss_refine1', 'loss_refine2'}
    casd = tiny_oicr(
        view_scales=(1.0, 0.5),
        view_flip=True,
        casd_iw=dict(type='CASDInputWiseLoss', divide_by_rois=False),
        casd_lw=dict(type='CASDLayerWiseLoss'),
        lw_levels=(0, 1),
    )
    assert casd.casd_iw.flipped == [False, True, False, True]
    losses = casd.loss(torch.rand(2, 3, 32, 32), samples)
    assert losses['loss_casd_iw'] > 0 and losses['loss_casd_lw'] > 0
    losses['loss_casd_lw'].backward()
    assert casd.backbone.conv1.weight.grad.abs().sum() > 0


def test_train_proposals_draws_the_same_subset_for_every_view(deterministic):
    model = tiny_oicr(train_proposals=2)
    proposals, labels = model.weak_targets([weak_sample([1, 1, 0])])
    assert proposals[0].shape == (2, 4) and labels[0].tolist() == [0, 1]


def test_predict_rescales_to_the_original_image(deterministic):
    model = tiny_oicr().eval()
    sample = weak_sample([0], scale_factor=(2.0, 2.0))
    with torch.no_grad():
        pred = model.predict(torch.rand(1, 3, 32, 32), [sample])[0].pred_instances
    assert len(pred) > 0 and pred.bboxes.max() <= 15.0
    scaled = {tuple(b) for b in (BOXES / 2).tolist()}
    assert {tuple(b) for b in pred.bboxes.tolist()} <= scaled


def test_sliding_windows_span_the_image():
    boxes = sliding_window_proposals(8, 8, sizes=(4,), ratios=(1.0,), stride_frac=0.5)
    assert boxes.shape == (9, 4)
    assert boxes[0].tolist() == [0, 0, 4, 4] and boxes[-1].tolist() == [4, 4, 8, 8]
    tall = sliding_window_proposals(8, 8, sizes=(4,), ratios=(4.0,), stride_frac=1.0)
    assert tall[0].tolist() == [0, 0, 2, 8]


def test_proposals_are_deterministic_and_inside_the_image():
    rng = np.random.default_rng(0)
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    img[10:30, 5:25] = 250
    first = WSODProposals(sizes=(16,), segment_scales=(100,)).transform(dict(img=img))
    second = WSODProposals(sizes=(16,), segment_scales=(100,)).transform(dict(img=img))
    assert np.array_equal(first['proposals'], second['proposals'])
    boxes = first['proposals']
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 50).all()
    assert (boxes[:, 3] <= 40).all() and len(first['proposals_scores']) == len(boxes)
    only_windows = WSODProposals(sizes=(16,), segment_scales=())(dict(img=img))
    assert len(only_windows['proposals']) < len(boxes)


def test_image_level_labels_drop_the_boxes():
    results = dict(
        gt_bboxes=np.zeros((3, 4), np.float32),
        gt_bboxes_labels=np.array([4, 1, 4]),
        gt_ignore_flags=np.array([False, True, False]),
    )
    out = ImageLevelLabels().transform(results)
    assert out['gt_bboxes_labels'].tolist() == [4]
    assert 'gt_bboxes' not in out and 'gt_ignore_flags' not in out


def test_corloc_hand_values():
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    gt_labels = torch.tensor([0, 1])
    pred_boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 9.0], [0.0, 0.0, 30.0, 30.0], [20.0, 20.0, 30.0, 30.0]]
    )
    # class 0: top box (0.9) IoU 0.9 -> hit; class 1: top box (0.8) is the
    # big one, IoU 100 / 900 -> miss though a lower-scored box would hit
    hits = corloc_hits(
        pred_boxes,
        torch.tensor([0.9, 0.8, 0.3]),
        torch.tensor([0, 1, 1]),
        gt_boxes,
        gt_labels,
    )
    assert hits == [(0, True), (1, False)]
    metric = CorLocMetric()
    metric.dataset_meta = dict(classes=('a', 'b'))
    metric.results = hits + [(1, True), (1, True)]
    values = metric.compute_metrics(metric.results)
    assert values['CorLoc_a'] == 100 and values['CorLoc_b'] == pytest.approx(200 / 3)
    assert values['CorLoc'] == pytest.approx((100 + 200 / 3) / 2)


def test_oicr_is_registered_for_mmdet_configs():
    assert MMDET_MODELS.get('OICR') is OICR
