"""Calibration mistakes: metrics, temperature scaling and its tool's inputs."""

import pytest
import torch
import torch.nn as nn
from mmengine.structures import BaseDataElement
from torch.utils.data import DataLoader

from mmcompress.calibrate import (
    ClsCalibrationMetric,
    ReliabilityDiagramHook,
    calibration_report,
    collect_logits,
    find_logits_module,
    fit_temperature,
)

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0]])
LABELS = torch.tensor([0, 1])


class Classifier(nn.Module):
    """``neck`` outputs a tuple (as mmpretrain necks), ``head`` the logits."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 8)
        self.neck = TupleNeck()
        self.head = nn.Linear(8, 3)

    def test_step(self, data):
        inputs, labels = data
        scores = self.head(self.neck(self.backbone(inputs))[0]).softmax(dim=1)
        return [
            BaseDataElement(gt_label=torch.tensor([int(y)]), pred_score=p)
            for p, y in zip(scores, labels)
        ]


class TupleNeck(nn.Module):
    def forward(self, x):
        return (x,)


def batches():
    return [(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))]


def test_report_given_logits():
    """calibration_report called with logits instead of probabilities.

    Message: must be probabilities (each row in [0, 1] summing to 1
    """
    with pytest.raises(
        ValueError,
        match=r'must be probabilities \(each row in '
        r'\[0, 1\] summing to 1.*row sums in \[1\.1, 1\.5\].*'
        'pass from_logits=True',
    ):
        calibration_report(LOGITS, LABELS)


def test_metric_given_logits_as_pred_score():
    """A model writes raw logits to pred_score and the calibration metric reads them.

    Message: the head must write softmax probabilities to pred_score
    """
    metric = ClsCalibrationMetric()
    metric.process(
        None,
        [
            dict(pred_score=p, gt_label=torch.tensor([int(y)]))
            for p, y in zip(LOGITS, LABELS)
        ],
    )
    with pytest.raises(
        ValueError,
        match='pred_score must be probabilities.*'
        'the head must write softmax probabilities',
    ):
        metric.evaluate(2)


def test_unknown_under_confidence_weight():
    """An unknown under-confidence weight for the UE metric.

    Message: ue_weight must be one of ('confidence', 'one_minus_confidence')
    """
    with pytest.raises(
        ValueError,
        match=r'ue_weight must be one of \('
        r"'confidence', 'one_minus_confidence'\), got '1-conf'",
    ):
        ClsCalibrationMetric(ue_weight='1-conf')


def test_temperature_fitted_on_a_tiny_split():
    """Temperature scaling fitted on a split of one image.

    Message: the fit split has only 1 samples (fewer than 100)
    """
    with pytest.warns(UserWarning) as record:
        temperature = fit_temperature(LOGITS[:1], LABELS[:1])
    messages = [str(w.message) for w in record]
    assert any(
        'the fit split has only 1 samples (fewer than 100)' in m for m in messages
    ), messages
    # the single image is classified correctly: no minimum, no scaling
    assert any(
        'all 1 samples of the fit split are classified correctly' in m for m in messages
    ), messages
    assert temperature == 1.0


def test_temperature_fitted_on_a_perfectly_classified_split():
    """Temperature scaling fitted on a split the model classifies perfectly.

    Message: all 150 samples of the fit split are classified correctly
    """
    logits = torch.tensor([[2.0, 0.0, 0.0]] * 150)
    with pytest.warns(
        UserWarning,
        match=r'all 150 samples of the fit split '
        r'are classified correctly, so its NLL keeps falling as '
        r'T -> 0.*keeping T = 1',
    ):
        assert fit_temperature(logits, torch.zeros(150).long()) == 1.0


def test_temperature_fitted_on_logits_unrelated_to_the_labels():
    """Temperature scaling with labels that do not match the model's classes.

    Message: the logits of the true class are not above the mean logit
    """
    logits = torch.tensor([[2.0, 0.0, 0.0]] * 150)
    labels = torch.full((150,), 2)
    with pytest.warns(
        UserWarning,
        match=r'\(150 samples, 0 classified '
        r'correctly\) the logits of the true class are not above '
        r'the mean logit.*clamped to 20.0',
    ):
        assert fit_temperature(logits, labels) == 20.0


def test_temperature_search_that_raises_the_nll():
    """A temperature search that ends worse than no scaling (far start, one LBFGS step).

    Message: has a higher NLL on the fit split (200 samples) than T = 1; keeping T = 1
    """
    generator = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(200, 5, generator=generator)
    labels = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).squeeze(1)
    with pytest.warns(
        UserWarning,
        match=r'higher NLL on the fit split \(200 '
        r'samples\) than T = 1; keeping T = 1',
    ):
        assert (
            fit_temperature(logits, labels, initial_temperature=19.0, max_iter=1) == 1.0
        )


def test_empty_validation_split():
    """Temperature scaling on an empty validation split.

    Message: val_dataloader has 0 samples
    """
    empty = DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 4)))
    with pytest.raises(
        ValueError,
        match='val_dataloader has 0 samples: '
        'temperature scaling needs a held-out split',
    ):
        collect_logits(Classifier(), empty, 'head', what='val_dataloader')


def test_logits_module_that_outputs_a_tuple():
    """tools/calibrate_temperature.py --module neck (a tuple, not logits).

    Message: module 'neck' outputs a tuple of 1 (a tensor of shape (4, 8)), not
    """
    with pytest.raises(
        ValueError,
        match=r"module 'neck' outputs a tuple of 1 "
        r'\(a tensor of shape \(4, 8\)\), not a \(N, '
        r"num_classes\) logits tensor.*'head'",
    ):
        collect_logits(Classifier(), batches(), 'neck')


def test_logits_module_with_the_wrong_width():
    """--module names a 2-D feature module, not the logits.

    Message: outputs 8 values per sample but the model predicts [3] classes
    """
    with pytest.raises(
        ValueError,
        match=r"module 'backbone' outputs 8 values "
        r'per sample but the model predicts \[3\] classes',
    ):
        collect_logits(Classifier(), batches(), 'backbone')


def test_logits_module_that_does_not_exist():
    """--module names no module of the model (nor of a DistillModel's student).

    Message: has no sub-module 'cls_head'
    """

    class DistillLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = Classifier()

    with pytest.raises(
        ValueError,
        match=r'\(DistillLike\) has no sub-module '
        r"'cls_head' \(nor has its student\).*top-level "
        r"modules: \['student'\]",
    ):
        find_logits_module(DistillLike(), 'cls_head')


def test_reliability_hook_without_calibration_metric():
    """ReliabilityDiagramHook in a config whose evaluator has no calibration metric.

    Message: the val evaluator has no calibration metric (found ['Accuracy'])
    """

    class Accuracy:
        pass

    class Loop:
        evaluator = type('Evaluator', (), {'metrics': [Accuracy()]})()

    runner = type('Runner', (), {'val_loop': Loop(), 'visualizer': None})()
    with pytest.warns(
        UserWarning,
        match=r'the val evaluator has no '
        r"calibration metric \(found \['Accuracy'\]\).*"
        'ClsCalibrationMetric',
    ):
        ReliabilityDiagramHook().after_val_epoch(runner)


def test_unknown_rankmixup_mixed_bn_stats():
    """RankMixupClassifier given a mixed_bn_stats value that does not exist.

    Message: mixed_bn_stats must be one of ('batch', 'raw'), got 'own'
    """
    from mmcompress.calibrate import RankMixupClassifier

    with pytest.raises(
        ValueError, match=r"mixed_bn_stats must be one of \('batch', 'raw'\), got 'own'"
    ):
        RankMixupClassifier(
            rank_loss=dict(type='MixupMarginRankingLoss'),
            mixed_bn_stats='own',
            backbone=dict(type='ResNet_CIFAR', depth=18),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=512),
        )
