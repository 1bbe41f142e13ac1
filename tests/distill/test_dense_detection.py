"""Head-output distillation of dense mmdet detectors (BCKD, LD-style KD):
box decoding per head type against mmdet's own predict path, the whole loss
of a DistillModel step against an independent computation, and errors."""

import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip('mmdet')
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import bbox_overlaps  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from mmcompress.distill.dense_detection import (  # noqa: E402
    decode_dense_boxes,
)
from mmcompress.registry import MODELS  # noqa: E402

NUM_CLASSES = 3
IMG = 64
ANCHOR_GEN = dict(
    type='AnchorGenerator',
    octave_base_scale=4,
    scales_per_octave=1,
    ratios=[1.0],
    strides=[8, 16, 32],
)
ASSIGN_ATSS = dict(
    assigner=dict(type='ATSSAssigner', topk=9),
    allowed_border=-1,
    pos_weight=-1,
    debug=False,
)
TEST_CFG = dict(
    nms_pre=1000,
    min_bbox_size=0,
    score_thr=0.05,
    nms=dict(type='nms', iou_threshold=0.5),
    max_per_img=10,
)


def _head(kind, channels=32):
    common = dict(
        num_classes=NUM_CLASSES,
        in_channels=channels,
        feat_channels=channels,
        stacked_convs=1,
    )
    focal = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25)
    if kind == 'gfl':
        return dict(
            type='GFLHead',
            anchor_generator=ANCHOR_GEN,
            reg_max=8,
            loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0),
            loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
            loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
            train_cfg=ASSIGN_ATSS,
            **common,
        )
    if kind == 'retina':
        return dict(
            type='RetinaHead',
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=2,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32],
            ),
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder', target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
            loss_cls=focal,
            loss_bbox=dict(type='L1Loss'),
            train_cfg=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.4,
                    min_pos_iou=0,
                ),
                sampler=dict(type='PseudoSampler'),
                allowed_border=-1,
                pos_weight=-1,
                debug=False,
            ),
            **common,
        )
    if kind == 'atss':
        return dict(
            type='ATSSHead',
            anchor_generator=ANCHOR_GEN,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder', target_stds=[0.1, 0.1, 0.2, 0.2]
            ),
            loss_cls=focal,
            loss_bbox=dict(type='GIoULoss'),
            train_cfg=ASSIGN_ATSS,
            **common,
        )
    assert kind == 'fcos'
    return dict(
        type='FCOSHead',
        strides=[8, 16, 32],
        regress_ranges=((-1, 16), (16, 32), (32, 1e8)),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        loss_cls=focal,
        loss_bbox=dict(type='GIoULoss'),
        **common,
    )


def _build_head(kind):
    with DefaultScope.overwrite_default_scope('mmdet'):
        head = MODELS.build(_head(kind))
    head.init_weights()
    return head


def _meta():
    return dict(
        img_shape=(IMG, IMG),
        ori_shape=(IMG, IMG),
        pad_shape=(IMG, IMG),
        batch_input_shape=(IMG, IMG),
        scale_factor=(1.0, 1.0),
    )


def _rows(boxes):
    """The boxes as a sorted list of rounded tuples (multiset compare)."""
    return sorted(tuple(round(v, 3) for v in row) for row in boxes.tolist())


@pytest.mark.parametrize('kind', ['gfl', 'retina', 'atss', 'fcos'])
def test_decoded_boxes_equal_mmdet_predict(kind):
    """decode_dense_boxes of every level equals the boxes mmdet's own
    predict_by_feat decodes (no score filter, no NMS; mmdet clips to the
    image, so the reference is clipped too). A training-mode FCOS head
    outputs stride units: decoding the training output must give the same
    boxes as mmdet's eval-mode prediction."""
    torch.manual_seed(0)
    head = _build_head(kind)
    feats = [torch.randn(1, 32, IMG // s, IMG // s) * 2 for s in (8, 16, 32)]
    head.eval()
    with torch.no_grad():
        outs = head(feats)
        head.train()
        outs_train = head(feats)
        head.eval()
    cls_scores, bbox_preds = outs[0], outs[1]
    strides = [8, 16, 32]
    priors = head.prior_generator.grid_priors(
        [c.shape[-2:] for c in cls_scores], device='cpu'
    )
    decode_head = head
    decode_preds = bbox_preds
    if kind == 'fcos':
        head.train()
        decode_preds = outs_train[1]
    mine = torch.cat(
        [
            decode_dense_boxes(
                decode_head, priors[lvl], decode_preds[lvl], strides[lvl]
            )
            for lvl in range(3)
        ]
    )
    head.eval()
    mine = torch.stack(
        [
            mine[:, 0].clamp(0, IMG),
            mine[:, 1].clamp(0, IMG),
            mine[:, 2].clamp(0, IMG),
            mine[:, 3].clamp(0, IMG),
        ],
        dim=1,
    )
    cfg = ConfigDict(
        nms_pre=100000, score_thr=0.0, min_bbox_size=-1, max_per_img=100000
    )
    extra = dict(score_factors=outs[2]) if len(outs) == 3 else {}
    result = head.predict_by_feat(
        cls_scores,
        bbox_preds,
        batch_img_metas=[_meta()],
        cfg=cfg,
        rescale=False,
        with_nms=False,
        **extra,
    )[0]
    # every (prior, class) pair is a candidate: each box appears C times
    expected = mine.repeat_interleave(NUM_CLASSES, dim=0)
    assert result.bboxes.shape == expected.shape
    assert _rows(result.bboxes) == _rows(expected)


def _detector(kind, width, channels):
    head = _head(kind, channels)
    train_cfg = head.pop('train_cfg', None)
    detector = dict(gfl='GFL', retina='RetinaNet', atss='ATSS', fcos='FCOS')[kind]
    return dict(
        type=detector,
        data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=width,
            num_stages=4,
            out_indices=(1, 2, 3),
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=False,
            style='pytorch',
        ),
        neck=dict(
            type='FPN',
            in_channels=[width * 2, width * 4, width * 8],
            out_channels=channels,
            start_level=0,
            num_outs=3,
        ),
        bbox_head=head,
        train_cfg=train_cfg,
        test_cfg=TEST_CFG,
    )


def _samples():
    samples = []
    boxes = [
        [[4.0, 6.0, 40.0, 50.0], [30.0, 30.0, 62.0, 60.0]],
        [[10.0, 2.0, 30.0, 20.0]],
    ]
    labels = [[0, 2], [1]]
    for bxs, lbs in zip(boxes, labels):
        sample = DetDataSample(metainfo=_meta())
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(bxs), labels=torch.tensor(lbs)
        )
        samples.append(sample)
    return samples


def _distill_model(kind, loss_cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        model = MODELS.build(
            dict(
                type='DistillModel',
                student=_detector(kind, 8, 32),
                teacher=dict(config=_detector(kind, 16, 64), checkpoint=None),
                input_shape=(3, IMG, IMG),
                distill=dict(
                    bckd=dict(student='bbox_head', teacher='bbox_head', loss=loss_cfg)
                ),
            )
        )
    model.student.init_weights()
    return model


def _reference_targets(head, cls_scores, samples):
    """Labels / label weights of the student's own assignment, recorded
    from the head's loss (not from the distillation code)."""
    captured = []
    original = head.get_targets

    def record(*args, **kwargs):
        out = original(*args, **kwargs)
        captured.append(out)
        return out

    head.get_targets = record
    try:
        with torch.no_grad():
            head.loss_by_feat(
                *cls_scores,
                [s.gt_instances for s in samples],
                [s.metainfo for s in samples],
            )
    finally:
        del head.get_targets
    out = captured[0]
    labels, weights = (out[1], out[2]) if len(out) == 6 else (out[0], out[1])
    return [lv.reshape(-1) for lv in labels], [w.reshape(-1).float() for w in weights]


def _gfl_boxes(head, priors, reg, stride):
    """GFL decode written out: expectation of each side's softmax over
    0..reg_max bins, times the stride, around the anchor centre."""
    n = head.reg_max
    dist = reg.permute(0, 2, 3, 1).reshape(-1, 4, n + 1).softmax(-1)
    sides = (dist * torch.arange(n + 1.0)).sum(-1) * stride
    cx = (priors[:, 0] + priors[:, 2]) / 2
    cy = (priors[:, 1] + priors[:, 3]) / 2
    return torch.stack(
        [cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]], 1
    )


def _reference_losses(model, inputs, samples, beta=1.0):
    """BCKD written out with plain torch ops and mmdet's bbox_overlaps."""
    student = model.student
    teacher = model.teachers['teacher']
    with torch.no_grad():
        outs_S = student.bbox_head(student.extract_feat(inputs))
        outs_T = teacher.bbox_head(teacher.extract_feat(inputs))
    head = student.bbox_head
    labels, weights = _reference_targets(head, outs_S, samples)
    pos = [((lv >= 0) & (lv < NUM_CLASSES)).sum() for lv in labels]
    avg = max(float(sum(pos)), 1.0)
    priors = head.prior_generator.grid_priors(
        [c.shape[-2:] for c in outs_S[0]], device='cpu'
    )
    cls_total = loc_total = 0.0
    for lvl, stride in enumerate([8, 16, 32]):
        if pos[lvl] == 0:
            continue  # official: no KD on a level without positives
        s = outs_S[0][lvl].permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
        t = outs_T[0][lvl].permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
        ps, pt = s.sigmoid(), t.sigmoid()
        bce = -(pt * torch.log(ps) + (1 - pt) * torch.log(1 - ps))
        cls_total += ((bce * (pt - ps).abs() ** beta).sum(1) * weights[lvl]).sum() / avg
        anchors = priors[lvl].repeat(2, 1)
        box_s = _gfl_boxes(head, anchors, outs_S[1][lvl], stride)
        box_t = _gfl_boxes(teacher.bbox_head, anchors, outs_T[1][lvl], stride)
        giou = bbox_overlaps(box_s, box_t, mode='giou', is_aligned=True)
        wloc = (pt - ps).abs().max(1)[0] * weights[lvl]
        loc_total += 4.0 * (wloc * (1 - giou)).sum() / avg
    return float(cls_total), float(loc_total), pos


def test_bckd_gfl_step_matches_independent_computation():
    """One DistillModel loss step of a GFL student: both BCKD terms equal
    the formulas computed independently (own decode, mmdet's GIoU, the
    student head's own targets)."""
    model = _distill_model('gfl', dict(type='DenseHeadDistillLoss'))
    model.train()
    torch.manual_seed(1)
    inputs = torch.randn(2, 3, IMG, IMG)
    samples = _samples()
    losses = model.loss(inputs, samples)
    assert {'loss_distill_bckd_cls', 'loss_distill_bckd_loc'} <= set(losses)
    assert 'loss_cls' in losses  # the student's own GFL losses are kept
    cls_ref, loc_ref, pos = _reference_losses(model, inputs, samples)
    assert sum(int(p) > 0 for p in pos) >= 1
    assert losses['loss_distill_bckd_cls'].item() == pytest.approx(cls_ref, rel=1e-4)
    assert losses['loss_distill_bckd_loc'].item() == pytest.approx(loc_ref, rel=1e-4)
    assert cls_ref > 0 and loc_ref > 0
    losses['loss_distill_bckd_loc'].backward()
    assert model.student.bbox_head.gfl_reg.weight.grad.abs().sum() > 0


def test_level_rule_and_kl_baseline_through_the_same_path():
    """Without the 'no positives -> no KD' quirk every level contributes, so
    the loss grows; the LD-style KL baseline is the mean over classes of the
    tau^2-scaled softmax KL, weighted and normalised like BCKD."""
    samples = _samples()
    torch.manual_seed(1)
    inputs = torch.randn(2, 3, IMG, IMG)
    official = _distill_model('gfl', dict(type='DenseHeadDistillLoss'))
    all_levels = _distill_model(
        'gfl',
        dict(
            type='DenseHeadDistillLoss',
            cls_loss=dict(
                type='BCKDClassificationLoss', skip_level_without_positives=False
            ),
            loc_loss=None,
        ),
    )
    official.train()
    all_levels.train()
    loss_official = official.loss(inputs, samples)
    loss_all = all_levels.loss(inputs, samples)
    assert 'loss_distill_bckd_loc' not in loss_all
    _, _, pos = _reference_losses(official, inputs, samples)
    assert any(int(p) == 0 for p in pos)  # some level has no positives
    assert (
        loss_all['loss_distill_bckd_cls'].item()
        > loss_official['loss_distill_bckd_cls'].item()
    )

    kl = _distill_model(
        'gfl',
        dict(
            type='DenseHeadDistillLoss',
            cls_loss=dict(type='DenseSoftmaxKDLoss', tau=2.0, loss_weight=10.0),
            loc_loss=None,
        ),
    )
    kl.train()
    value = kl.loss(inputs, samples)['loss_distill_bckd_cls'].item()
    student, teacher = kl.student, kl.teachers['teacher']
    with torch.no_grad():
        outs_S = student.bbox_head(student.extract_feat(inputs))
        outs_T = teacher.bbox_head(teacher.extract_feat(inputs))
    labels, weights = _reference_targets(student.bbox_head, outs_S, samples)
    avg = max(float(sum(((lv < NUM_CLASSES).sum() for lv in labels))), 1.0)
    ref = 0.0
    for lvl in range(3):
        s = outs_S[0][lvl].permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
        t = outs_T[0][lvl].permute(0, 2, 3, 1).reshape(-1, NUM_CLASSES)
        q = F.softmax(t / 2, 1)
        kl_terms = q * (q.log() - F.log_softmax(s / 2, 1)) * 4
        ref += (kl_terms.mean(1) * weights[lvl]).sum() / avg
    assert value == pytest.approx(10 * float(ref), rel=1e-4)


@pytest.mark.parametrize('kind', ['retina', 'atss', 'fcos'])
def test_other_dense_students_train_one_step(kind):
    """RetinaNet (9 anchors per location), ATSS and FCOS students get both
    BCKD terms, finite and with gradients into the student's regression."""
    model = _distill_model(kind, dict(type='DenseHeadDistillLoss'))
    model.train()
    torch.manual_seed(2)
    losses = model.loss(torch.randn(2, 3, IMG, IMG), _samples())
    total = losses['loss_distill_bckd_cls'] + losses['loss_distill_bckd_loc']
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    reg = dict(retina='retina_reg', atss='atss_reg', fcos='conv_reg')[kind]
    grad = getattr(model.student.bbox_head, reg).weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match='cls_loss and/or loc_loss'):
        MODELS.build(dict(type='DenseHeadDistillLoss', cls_loss=None, loc_loss=None))
    # teacher with another anchor layout
    teacher = _detector('gfl', 16, 64)
    teacher['bbox_head']['anchor_generator'] = dict(ANCHOR_GEN, octave_base_scale=8)
    with (
        DefaultScope.overwrite_default_scope('mmdet'),
        pytest.raises(RuntimeError, match='share the prior layout'),
    ):
        MODELS.build(
            dict(
                type='DistillModel',
                student=_detector('gfl', 8, 32),
                teacher=dict(config=teacher, checkpoint=None),
                input_shape=(3, IMG, IMG),
                distill=dict(
                    bckd=dict(
                        student='bbox_head',
                        teacher='bbox_head',
                        loss=dict(type='DenseHeadDistillLoss'),
                    )
                ),
            )
        )
    # recording only part of the head
    with (
        DefaultScope.overwrite_default_scope('mmdet'),
        pytest.raises(RuntimeError, match='record the whole head'),
    ):
        MODELS.build(
            dict(
                type='DistillModel',
                student=_detector('gfl', 8, 32),
                teacher=dict(config=_detector('gfl', 16, 64), checkpoint=None),
                input_shape=(3, IMG, IMG),
                distill=dict(
                    bckd=dict(
                        student=dict(module='bbox_head', index=0),
                        teacher=dict(module='bbox_head', index=0),
                        loss=dict(type='DenseHeadDistillLoss'),
                    )
                ),
            )
        )
    # a softmax classifier
    student = copy.deepcopy(_detector('retina', 8, 32))
    student['bbox_head']['loss_cls'] = dict(type='CrossEntropyLoss', use_sigmoid=False)
    with (
        DefaultScope.overwrite_default_scope('mmdet'),
        pytest.raises(RuntimeError, match='softmax classifier'),
    ):
        MODELS.build(
            dict(
                type='DistillModel',
                student=student,
                teacher=dict(config=_detector('retina', 16, 64), checkpoint=None),
                input_shape=(3, IMG, IMG),
                distill=dict(
                    bckd=dict(
                        student='bbox_head',
                        teacher='bbox_head',
                        loss=dict(type='DenseHeadDistillLoss'),
                    )
                ),
            )
        )
