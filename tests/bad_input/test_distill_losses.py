"""Bad input to the distillation losses: non-finite hyper-parameters, empty batches."""

import math

import pytest
import torch

from mmcompress.distill import DistillModel
from mmcompress.distill.losses import (
    ATLoss,
    BCKDClassificationLoss,
    BCKDLocalizationLoss,
    ChannelWiseDivergenceLoss,
    DecoupledKDLoss,
    DenseSoftmaxKDLoss,
    DISTLoss,
    FeatureMSELoss,
    ICKDLoss,
    MGDLoss,
    PKDLoss,
    VanillaKDLoss,
)

NON_FINITE = [math.nan, math.inf, -math.inf]
TEMPERATURE_LOSSES = [
    VanillaKDLoss,
    DecoupledKDLoss,
    DISTLoss,
    ChannelWiseDivergenceLoss,
    DenseSoftmaxKDLoss,
]
ALL_LOSSES = [
    VanillaKDLoss,
    DecoupledKDLoss,
    DISTLoss,
    FeatureMSELoss,
    ATLoss,
    PKDLoss,
    MGDLoss,
    ICKDLoss,
    ChannelWiseDivergenceLoss,
    BCKDClassificationLoss,
    BCKDLocalizationLoss,
    DenseSoftmaxKDLoss,
]


@pytest.mark.parametrize('value', NON_FINITE)
@pytest.mark.parametrize('loss_type', TEMPERATURE_LOSSES, ids=lambda c: c.__name__)
def test_non_finite_temperature(loss_type, value):
    """A distillation loss configured with tau=nan or tau=inf.

    Message: tau must be > 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=rf'tau must be > 0 \(a finite number\), got '
        rf'{value}',
    ):
        loss_type(tau=value)


@pytest.mark.parametrize('value', NON_FINITE)
@pytest.mark.parametrize('loss_type', ALL_LOSSES, ids=lambda c: c.__name__)
def test_non_finite_loss_weight(loss_type, value):
    """A distillation loss configured with loss_weight=nan or inf.

    Message: loss_weight must be >= 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=rf'loss_weight must be >= 0 \(a finite number\), '
        rf'got {value}',
    ):
        loss_type(loss_weight=value)


@pytest.mark.parametrize(
    'kwargs,name',
    [
        (dict(alpha=math.nan), 'alpha'),
        (dict(beta=math.inf), 'beta'),
    ],
)
def test_non_finite_loss_term_weight(kwargs, name):
    """Decoupled KD configured with alpha=nan or beta=inf.

    Message: beta must be >= 0 (a finite number), got inf
    """
    with pytest.raises(ValueError, match=rf'{name} must be >= 0 \(a finite'):
        DecoupledKDLoss(**kwargs)


@pytest.mark.parametrize('value', [math.nan, 1.0])
def test_mgd_mask_ratio_out_of_range(value):
    """MGD configured with lambda_mgd=nan or 1 (mask everything).

    Message: lambda_mgd must be in [0, 1) (a finite number)
    """
    with pytest.raises(
        ValueError,
        match=r'lambda_mgd must be in \[0, 1\) '
        r'\(a finite number\), got',
    ):
        MGDLoss(lambda_mgd=value)


@pytest.mark.parametrize('value', [math.nan, math.inf, 0.0])
def test_bckd_avg_factor_not_positive_finite(value):
    """A detection head passes avg_factor=nan (or inf, 0) to a BCKD loss.

    Message: avg_factor must be > 0 and finite
    """
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match='avg_factor must be > 0 and finite'):
        BCKDClassificationLoss()(s, t, avg_factor=value)


def test_non_finite_student_loss_weight():
    """DistillModel configured with student_loss_weight=nan.

    Message: DistillModel: student_loss_weight must be >= 0 (a finite number)
    """
    with pytest.raises(
        ValueError,
        match=r'DistillModel: student_loss_weight '
        r'must be >= 0 \(a finite number\), got nan',
    ):
        DistillModel(
            student=dict(type='ImageClassifier'),
            teacher=dict(config=dict(type='ImageClassifier')),
            distill=dict(
                kd=dict(
                    student='head.fc',
                    teacher='head.fc',
                    loss=dict(type='VanillaKDLoss'),
                )
            ),
            student_loss_weight=math.nan,
        )


def _empty_inputs(loss_type):
    """An empty batch (N = 0) of the input layout each loss expects."""
    if loss_type in (
        VanillaKDLoss,
        DecoupledKDLoss,
        DISTLoss,
        BCKDClassificationLoss,
        DenseSoftmaxKDLoss,
    ):
        return (
            torch.randn(0, 5),
            torch.randn(0, 5),
            dict(gt_labels=torch.zeros(0, dtype=torch.long)),
        )
    if loss_type is BCKDLocalizationLoss:
        return (
            torch.rand(0, 4),
            torch.rand(0, 4),
            dict(cls_scores_S=torch.randn(0, 5), cls_scores_T=torch.randn(0, 5)),
        )
    return torch.randn(0, 3, 4, 4), torch.randn(0, 3, 4, 4), {}


@pytest.mark.parametrize('loss_type', ALL_LOSSES, ids=lambda c: c.__name__)
def test_empty_batch(loss_type):
    """A batch with no sample (N = 0) reaches a distillation loss.

    Message: empty batch (student shape (0, 5), teacher shape (0, 5)): the loss is 0
    """
    loss = loss_type(loss_weight=2.0)
    pred_S, pred_T, kwargs = _empty_inputs(loss_type)
    pred_S.requires_grad_()
    shape = tuple(pred_S.shape)
    with pytest.warns(
        UserWarning,
        match=rf'empty batch \(student shape '
        rf'{re_shape(shape)}, teacher shape {re_shape(shape)}\): '
        'the loss is 0 with zero gradients',
    ):
        value = loss(pred_S, pred_T, **kwargs)
    assert value.item() == 0.0 and value.dim() == 0
    value.backward()
    assert pred_S.grad is not None and pred_S.grad.shape == pred_S.shape
    for param in loss.parameters():  # MGD's generator: used, zero gradient
        assert param.grad is not None and not param.grad.any()


def re_shape(shape):
    """A shape tuple as a regular expression."""
    return str(shape).replace('(', r'\(').replace(')', r'\)')


def test_empty_student_batch_only():
    """The student input is empty but the teacher's is not (wrong recorded module).

    Message: the student batch is empty but the other is not
    """
    with pytest.raises(
        ValueError,
        match=r'VanillaKDLoss: the student batch is '
        r'empty but the other is not \(student shape \(0, 5\), '
        r'teacher shape \(4, 5\)\)',
    ):
        VanillaKDLoss()(torch.randn(0, 5), torch.randn(4, 5))
