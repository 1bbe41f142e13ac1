"""Calibration metrics against hand values and an explicit-loop reference."""

import math

import numpy as np
import pytest
import torch

from mmcompress.calibrate import (
    ClsCalibrationMetric,
    SegCalibrationMetric,
    calibration_report,
    equal_width_edges,
)


def reference_errors(
    probs, labels, num_bins=15, adaptive=False, ue_weight='confidence'
):
    """Explicit loops over samples and bins (the official code's rule:
    ``lower < conf <= upper`` with float32 edges, proportions over all n;
    UE weighted by ``conf`` as the official code, or by ``1 - conf``)."""
    probs = probs.float()
    n, num_classes = probs.shape
    confidences = [float(probs[i].max()) for i in range(n)]
    predictions = [int(probs[i].argmax()) for i in range(n)]
    correct = [float(predictions[i] == int(labels[i])) for i in range(n)]
    if adaptive:
        edges = np.interp(
            np.linspace(0, n, num_bins + 1),
            np.arange(n),
            np.sort(np.array(confidences, dtype=np.float64)),
        )
        edges = [float(np.float32(e)) for e in edges]
    else:
        edges = [float(e) for e in torch.linspace(0, 1, num_bins + 1)]

    def binned(values, hits):
        ece = oe = ue = 0.0
        for b in range(num_bins):
            members = [i for i in range(n) if edges[b] < values[i] <= edges[b + 1]]
            if not members:
                continue
            acc = sum(hits[i] for i in members) / len(members)
            conf = sum(values[i] for i in members) / len(members)
            prop = len(members) / n
            ece += prop * abs(acc - conf)
            oe += prop * conf * max(conf - acc, 0.0)
            weight = conf if ue_weight == 'confidence' else 1 - conf
            ue += prop * weight * max(acc - conf, 0.0)
        return ece, oe, ue

    ece, oe, ue = binned(confidences, correct)
    classwise = 0.0
    for k in range(num_classes):
        values = [float(probs[i, k]) for i in range(n)]
        hits = [float(int(labels[i]) == k) for i in range(n)]
        classwise += binned(values, hits)[0] / num_classes
    nll = (
        -sum(math.log(max(float(probs[i, int(labels[i])]), 1e-12)) for i in range(n))
        / n
    )
    return dict(
        ece=ece, oe=oe, ue=ue, cece=classwise, nll=nll, accuracy=sum(correct) / n
    )


def random_predictions(num_samples=300, num_classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(num_samples, num_classes, generator=generator)
    labels = torch.randint(0, num_classes, (num_samples,), generator=generator)
    return logits.softmax(dim=1), labels


HAND_PROBS = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
HAND_LABELS = torch.tensor([0, 1, 1, 0])


def test_hand_computed_values():
    report = calibration_report(HAND_PROBS, HAND_LABELS)
    # bins: 0.9 -> (13/15, 14/15] with acc 1/2; 0.7 -> acc 1; 0.55 -> acc 0
    assert report['ece'] == pytest.approx(
        0.5 * 0.4 + 0.25 * 0.3 + 0.25 * 0.55, abs=1e-6
    )
    assert report['oe'] == pytest.approx(0.5 * 0.9 * 0.4 + 0.25 * 0.55 * 0.55, abs=1e-6)
    # official weight conf_b = 0.7 on the under-confident bin (acc 1)
    assert report['ue'] == pytest.approx(0.25 * 0.7 * 0.3, abs=1e-6)
    assert report['cece'] == pytest.approx(0.4125, abs=1e-6)
    assert report['nll'] == pytest.approx(
        -(math.log(0.9) + math.log(0.1) + math.log(0.7) + math.log(0.45)) / 4, abs=1e-6
    )
    assert report['accuracy'] == 0.5


def test_adaptive_ece_hand_value_two_bins():
    # edges = interp([0, 2, 4], [0..3], [.55, .7, .9, .9]) = [.55, .9, .9]:
    # the lowest sample (0.55) is outside every bin (official quirk)
    report = calibration_report(HAND_PROBS, HAND_LABELS, num_bins=2)
    conf = (0.7 + 0.9 + 0.9) / 3
    assert report['aece'] == pytest.approx(0.75 * abs(2 / 3 - conf), abs=1e-6)


def test_bin_membership_upper_edge_inclusive():
    edges = equal_width_edges(15)
    on_edge = float(edges[9])  # belongs to bin 8 (lower < c <= upper)
    above = float(np.nextafter(np.float32(on_edge), np.float32(1)))
    probs = torch.tensor([[on_edge, 1 - on_edge], [above, 1 - above]])
    labels = torch.tensor([0, 1])
    # separate bins: |1 - c1|/2 + |0 - c2|/2; same bin would give
    # |0.5 - (c1 + c2)/2| which differs
    expected = 0.5 * (1 - on_edge) + 0.5 * above
    assert calibration_report(probs, labels)['ece'] == pytest.approx(expected, abs=1e-7)
    assert reference_errors(probs, labels)['ece'] == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('num_bins', [15, 7])
def test_matches_loop_reference(seed, num_bins):
    probs, labels = random_predictions(seed=seed)
    report = calibration_report(probs, labels, num_bins)
    expected = reference_errors(probs, labels, num_bins)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value, abs=1e-6), key
    adaptive = reference_errors(probs, labels, num_bins, adaptive=True)
    assert report['aece'] == pytest.approx(adaptive['ece'], abs=1e-6)


def cls_samples(probs, labels):
    return [
        dict(pred_score=p, gt_label=torch.tensor([int(y)]))
        for p, y in zip(probs, labels)
    ]


def test_under_confidence_weight_is_selectable():
    report = calibration_report(
        HAND_PROBS, HAND_LABELS, ue_weight='one_minus_confidence'
    )
    assert report['ue'] == pytest.approx(0.25 * 0.3 * 0.3, abs=1e-6)
    probs, labels = random_predictions(seed=2)
    for weight in ('confidence', 'one_minus_confidence'):
        expected = reference_errors(probs, labels, ue_weight=weight)['ue']
        assert calibration_report(probs, labels, ue_weight=weight)[
            'ue'
        ] == pytest.approx(expected, abs=1e-7)
        metric = ClsCalibrationMetric(ue_weight=weight)
        metric.process(None, cls_samples(probs, labels))
        assert metric.evaluate(len(labels))['calibration/ue'] == pytest.approx(
            100 * expected, abs=1e-5
        )


def test_report_from_logits_equals_report_of_softmax():
    logits = 3 * torch.randn(40, 4, generator=torch.Generator().manual_seed(5))
    labels = torch.arange(40) % 4
    assert calibration_report(logits, labels, from_logits=True) == calibration_report(
        logits.softmax(dim=1), labels
    )


def test_cls_metric_in_percent_and_keeps_bin_sums():
    probs, labels = random_predictions()
    metric = ClsCalibrationMetric()
    metric.process(None, cls_samples(probs[:100], labels[:100]))
    metric.process(None, cls_samples(probs[100:], labels[100:]))
    result = metric.evaluate(len(labels))
    expected = reference_errors(probs, labels)
    assert result['calibration/ece'] == pytest.approx(100 * expected['ece'], abs=1e-4)
    assert result['calibration/cece'] == pytest.approx(100 * expected['cece'], abs=1e-4)
    assert result['calibration/nll'] == pytest.approx(expected['nll'], abs=1e-6)
    stats, ece = metric.pop_reliability()
    assert stats.total == 300 and int(stats.counts.sum()) == 300
    assert 100 * ece == pytest.approx(result['calibration/ece'])
    assert metric.pop_reliability() is None  # taken once


def test_cls_metric_bad_inputs():
    metric = ClsCalibrationMetric()
    with pytest.raises(ValueError, match='no predictions'):
        metric.compute_metrics([])
    probs, labels = random_predictions(num_samples=4)
    probs[2, 1] = float('nan')
    metric.process(None, cls_samples(probs, labels))
    with pytest.raises(ValueError, match='NaN or inf for 1 of 4'):
        metric.evaluate(4)
    with pytest.raises(KeyError, match='pred_score'):
        metric.process(None, [dict(gt_label=torch.tensor([0]))])
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 2\)'):
        calibration_report(HAND_PROBS, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match='num_bins'):
        ClsCalibrationMetric(num_bins=0)


def test_cls_metric_single_class_is_perfectly_calibrated():
    metric = ClsCalibrationMetric()
    metric.process(None, cls_samples(torch.ones(3, 1), torch.zeros(3)))
    result = metric.evaluate(3)
    assert result['calibration/ece'] == 0
    assert result['calibration/aece'] == 0
    assert result['calibration/accuracy'] == 100
    assert result['calibration/nll'] == 0


def seg_sample(logits, labels):
    return dict(seg_logits=dict(data=logits), gt_sem_seg=dict(data=labels[None]))


def test_seg_metric_matches_flattened_reference():
    generator = torch.Generator().manual_seed(3)
    logits = [2 * torch.randn(4, 6, 5, generator=generator) for _ in range(3)]
    labels = [torch.randint(0, 4, (6, 5), generator=generator) for _ in range(3)]
    labels[0][0, :] = 255
    labels[2][:, 1] = 255
    metric = SegCalibrationMetric(aece_pixels_per_image=1000)
    metric.process(
        None, [seg_sample(logits[0], labels[0]), seg_sample(logits[1], labels[1])]
    )
    metric.process(None, [seg_sample(logits[2], labels[2])])
    result = metric.evaluate(3)

    probs = torch.cat([x.flatten(1).t().softmax(dim=1) for x in logits])
    flat_labels = torch.cat([y.reshape(-1) for y in labels])
    valid = flat_labels != 255
    expected = reference_errors(probs[valid], flat_labels[valid])
    adaptive = reference_errors(probs[valid], flat_labels[valid], adaptive=True)
    for key in ('ece', 'oe', 'ue', 'cece', 'accuracy'):
        assert result[f'calibration/{key}'] == pytest.approx(
            100 * expected[key], abs=1e-4
        ), key
    assert result['calibration/nll'] == pytest.approx(expected['nll'], abs=1e-6)
    assert result['calibration/aece'] == pytest.approx(100 * adaptive['ece'], abs=1e-4)
    stats, ece = metric.pop_reliability()
    assert stats.total == int(valid.sum())
    assert 100 * ece == pytest.approx(result['calibration/ece'])


def test_seg_metric_bounded_sample_and_bad_inputs():
    metric = SegCalibrationMetric(aece_pixels_per_image=7)
    metric.process(
        None, [seg_sample(torch.randn(3, 5, 5), torch.randint(0, 3, (5, 5)))]
    )
    assert metric.results[0]['sample_conf'].numel() == 7
    assert metric.results[0]['top']['total'] == 25

    all_ignored = SegCalibrationMetric()
    all_ignored.process(
        None, [seg_sample(torch.randn(3, 2, 2), torch.full((2, 2), 255))]
    )
    with pytest.raises(ValueError, match='no valid pixels'):
        all_ignored.evaluate(1)
    nan_logits = torch.randn(3, 2, 2)
    nan_logits[0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        all_ignored.process(None, [seg_sample(nan_logits, torch.zeros(2, 2))])
    with pytest.raises(ValueError, match='4 pixels but seg_logits has 9'):
        all_ignored.process(None, [seg_sample(torch.randn(3, 3, 3), torch.zeros(2, 2))])


def test_metrics_read_downstream_data_samples():
    from mmengine.structures import PixelData
    from mmpretrain.structures import DataSample
    from mmseg.structures import SegDataSample

    import mmcompress  # noqa: F401  (torchvision fix before mmseg imports)

    probs, labels = random_predictions(num_samples=20)
    cls_metric = ClsCalibrationMetric()
    cls_metric.process(
        None,
        [
            DataSample().set_pred_score(p).set_gt_label(int(y)).to_dict()
            for p, y in zip(probs, labels)
        ],
    )
    assert cls_metric.evaluate(20)['calibration/ece'] == pytest.approx(
        100 * reference_errors(probs, labels)['ece'], abs=1e-4
    )

    logits = torch.randn(3, 4, 4)
    gt = torch.randint(0, 3, (1, 4, 4))
    sample = SegDataSample()
    sample.seg_logits = PixelData(data=logits)
    sample.gt_sem_seg = PixelData(data=gt)
    seg_metric = SegCalibrationMetric()
    seg_metric.process(None, [sample.to_dict()])
    expected = reference_errors(logits.flatten(1).t().softmax(dim=1), gt.reshape(-1))
    assert seg_metric.evaluate(1)['calibration/ece'] == pytest.approx(
        100 * expected['ece'], abs=1e-4
    )


def test_seg_metric_single_channel_logits_use_sigmoid():
    logits = torch.randn(1, 3, 3)
    gt = torch.randint(0, 2, (3, 3))
    metric = SegCalibrationMetric()
    metric.process(None, [seg_sample(logits, gt)])
    foreground = logits.reshape(-1).sigmoid()
    probs = torch.stack([1 - foreground, foreground], dim=1)
    expected = reference_errors(probs, gt.reshape(-1))
    result = metric.evaluate(1)
    for key in ('ece', 'cece', 'accuracy'):
        assert result[f'calibration/{key}'] == pytest.approx(
            100 * expected[key], abs=1e-4
        )
