"""Contract of every registered metric: hand-computed ECE on a known batch and
on a batch of 1, values in percent, and clear errors for a sample without the
needed fields and for mismatched shapes.

The table ``CASES`` must hold one entry per metric registered by mmcompress:
``test_every_registered_metric_has_a_case`` fails for a new metric without one.
"""

import math

import pytest
import torch

from mmcompress.registry import METRICS

from .registered import missing_and_stale, registered_metrics


def cls_sample(label, predicted, confidence=1.0, classes=4):
    score = torch.full((classes,), (1 - confidence) / (classes - 1))
    score[predicted] = confidence
    return dict(pred_score=score, gt_label=torch.tensor([label]))


def seg_sample(labels, predicted):
    """Near-certain logits (C=3) predicting ``predicted`` for each pixel."""
    predicted = torch.tensor(predicted).reshape(2, 2)
    logits = torch.nn.functional.one_hot(predicted, 3).permute(2, 0, 1) * 50.0
    return dict(
        seg_logits=dict(data=logits.float()),
        gt_sem_seg=dict(data=torch.tensor(labels).reshape(1, 2, 2)),
    )


def sr_sample(levels):
    """A 16x16 grey image (100/255) and a prediction off by ``levels`` grey
    levels everywhere (alternate rows up and down): MSE ``levels ** 2``."""
    gt = torch.full((1, 16, 16), 100 / 255)
    offset = torch.full((1, 16, 16), levels / 255)
    offset[..., ::2, :] *= -1
    return dict(pred_img=gt + offset, gt_img=gt)


def label_map_sample(labels, predicted):
    """A 2x2 label map and its predicted map (``IoUMetric`` fields)."""
    return dict(
        pred_sem_seg=dict(data=torch.tensor(predicted).reshape(1, 2, 2)),
        gt_sem_seg=dict(data=torch.tensor(labels).reshape(1, 2, 2)),
    )


def box_sample(gt_label, predicted_box):
    """One ground-truth box ``[0, 0, 10, 10]`` of class ``gt_label`` and two
    detections of that class, the higher-scored one at ``predicted_box``."""
    return dict(
        pred_instances=dict(
            bboxes=torch.tensor([predicted_box, [0.0, 0.0, 10.0, 10.0]]),
            scores=torch.tensor([0.9, 0.1]),
            labels=torch.tensor([gt_label, gt_label]),
        ),
        gt_instances=dict(
            bboxes=torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
            labels=torch.tensor([gt_label]),
        ),
    )


def image_scores_sample(labels, scores):
    """Image-level class scores and the image's ground-truth labels."""
    return dict(
        pred_image_scores=torch.tensor(scores),
        gt_instances=dict(labels=torch.tensor(labels)),
    )


# name -> (build args, samples of a batch where 3 of 4 predictions are right
# at confidence ~1 (ECE 25 %), one right sample (ECE 0 %), a sample missing a
# field with the message, a sample of mismatched shapes with the message)
CASES = {
    'ClsCalibrationMetric': (
        dict(),
        [cls_sample(0, 0), cls_sample(1, 1), cls_sample(2, 2), cls_sample(3, 0)],
        [cls_sample(2, 2)],
        (dict(gt_label=torch.tensor([1])), 'needs `pred_score`'),
        (
            dict(pred_score=torch.ones(4) / 4, gt_label=torch.tensor([1, 2])),
            'needs one gt_label per sample',
        ),
    ),
    'SegCalibrationMetric': (
        dict(),
        [seg_sample([0, 1, 2, 1], [0, 1, 2, 0])],
        [seg_sample([0, 1, 2, 1], [0, 1, 2, 1])],
        (
            dict(seg_logits=dict(data=torch.zeros(3, 2, 2))),
            'needs `seg_logits` and `gt_sem_seg`',
        ),
        (
            dict(
                seg_logits=dict(data=torch.zeros(3, 2, 2)),
                gt_sem_seg=dict(data=torch.zeros(1, 3, 3, dtype=torch.long)),
            ),
            'gt_sem_seg has 9 pixels but seg_logits has 4',
        ),
    ),
    # PSNR of MSE 4 and MSE 1 images: (20 log10(255 / 2) + 20 log10(255)) / 2
    # = 20 log10(255) - 10 log10(2) (HEADLINE); one image of MSE 1: 48.1308 dB
    'SRQualityMetric': (
        dict(),
        [sr_sample(2), sr_sample(1)],
        [sr_sample(1)],
        (dict(gt_img=torch.zeros(1, 16, 16)), 'needs `pred_img` and `gt_img`'),
        (
            dict(pred_img=torch.zeros(1, 16, 16), gt_img=torch.zeros(1, 12, 16)),
            r'pred_img \(1, 16, 16\) and gt_img \(1, 12, 16\)',
        ),
    ),
    # classes background (0), old class 1, new class 2; the batch: IoU 0.5,
    # 0.5, 1.0 -> old 0.5, new 1.0, hIoU 2/3
    'IncrementalIoUMetric': (
        dict(num_base_classes=1),
        [label_map_sample([0, 1, 2, 1], [0, 1, 2, 0])],
        [label_map_sample([0, 1, 2, 1], [0, 1, 2, 1])],
        (
            dict(gt_sem_seg=dict(data=torch.zeros(1, 2, 2))),
            'needs `pred_sem_seg` and `gt_sem_seg`',
        ),
        (
            dict(
                pred_sem_seg=dict(data=torch.zeros(1, 2, 2)),
                gt_sem_seg=dict(data=torch.zeros(1, 3, 2)),
            ),
            r'pred_sem_seg \(1, 2, 2\) and gt_sem_seg \(1, 3, 2\) differ',
        ),
    ),
    # class 0 localised (top box on the object), class 1 not (top box off it)
    'CorLocMetric': (
        dict(),
        [
            box_sample(0, [1.0, 0.0, 10.0, 10.0]),
            box_sample(1, [20.0, 20.0, 30.0, 30.0]),
        ],
        [box_sample(0, [0.0, 0.0, 10.0, 10.0])],
        (
            dict(pred_instances=box_sample(0, [0.0] * 4)['pred_instances']),
            'needs ground-truth boxes',
        ),
        (
            dict(
                box_sample(0, [0.0] * 4),
                pred_instances=dict(
                    bboxes=torch.zeros(2, 4),
                    scores=torch.ones(3),
                    labels=torch.zeros(2, dtype=torch.long),
                ),
            ),
            'boxes, scores and labels differ in length',
        ),
    ),
    # class 0 ranked first on its image (AP 1), class 1 ranked below a
    # negative image (AP 1/2): cls_mAP 75 %
    'ImageLevelAPMetric': (
        dict(),
        [image_scores_sample([0], [0.9, 0.1]), image_scores_sample([1], [0.8, 0.05])],
        [image_scores_sample([0], [0.9, 0.1])],
        (dict(gt_instances=dict(labels=torch.tensor([0]))), 'pred_image_scores'),
        (image_scores_sample([2], [0.9, 0.1]), r'shape \(2,\) and gt labels \[2\]'),
    ),
}
# dataset meta the metric reads (the class names of the evaluated split)
META = {'IncrementalIoUMetric': dict(classes=('background', 'old', 'new'))}
NAMES = sorted(CASES)


def test_every_registered_metric_has_a_case():
    registered = registered_metrics()
    assert len(registered) == len(NAMES), missing_and_stale(registered, CASES)
    assert not missing_and_stale(registered, CASES)


def evaluate(name, samples):
    metric = METRICS.build(dict(type=name, **CASES[name][0]))
    if name in META:
        metric.dataset_meta = META[name]
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


# Metrics whose headline value is not the ECE: name -> (key, value on the
# batch case, value on the single-sample case)
HEADLINE = {
    'SRQualityMetric': ('psnr', 20 * math.log10(255) - 10 * math.log10(2), 48.1308),
    'IncrementalIoUMetric': ('hIoU', 66.67, 100.0),  # 200 / 3, mmseg rounds to 0.01
    'CorLocMetric': ('CorLoc', 50.0, 100.0),  # classes 100 % and 0 %
    'ImageLevelAPMetric': ('cls_mAP', 75.0, 100.0),
}


def headline(name, results):
    key = HEADLINE.get(name, ('ece',))[0]
    return next(v for k, v in results.items() if k.split('/')[-1] == key)


@pytest.mark.parametrize('name', NAMES)
def test_headline_value_on_known_predictions(name):
    batch_value, single_value = HEADLINE.get(name, (None, 25.0, 0.0))[1:]
    results = evaluate(name, CASES[name][1])
    assert headline(name, results) == pytest.approx(batch_value, abs=1e-3)
    assert all(v == v for v in results.values())  # no NaN
    single = evaluate(name, CASES[name][2])
    assert headline(name, single) == pytest.approx(single_value, abs=1e-3)


@pytest.mark.parametrize('name', NAMES)
def test_missing_field_raises(name):
    sample, message = CASES[name][3]
    metric = METRICS.build(dict(type=name, **CASES[name][0]))
    with pytest.raises(KeyError, match=message):
        metric.process({}, [sample])


@pytest.mark.parametrize('name', NAMES)
def test_mismatched_shapes_raise(name):
    sample, message = CASES[name][4]
    metric = METRICS.build(dict(type=name, **CASES[name][0]))
    with pytest.raises(ValueError, match=message):
        metric.process({}, [sample])


@pytest.mark.parametrize('name', NAMES)
def test_no_predictions_raise(name):
    metric = METRICS.build(dict(type=name, **CASES[name][0]))
    with pytest.raises(ValueError, match='received no'):
        metric.compute_metrics([])
