"""Each CISS loss against a hand computation on tiny tensors."""

import math

import pytest
import torch

from mmcompress.incremental.losses import (
    ac_loss,
    bce_kd_loss,
    mbce_loss,
    unbiased_ce_loss,
    unbiased_kd_loss,
)


def sig(x):
    return 1 / (1 + math.exp(-x))


def bce(x, t, pos_weight=1.0):
    """Binary cross-entropy of logit x and target t, written out."""
    return -(pos_weight * t * math.log(sig(x)) + (1 - t) * math.log(1 - sig(x)))


# logits (N=1, C=2, H=1, W=2) and labels (1, 1, 2)
LOGITS = torch.tensor([[[[0.5, -1.0]], [[2.0, 0.0]]]])


def test_mbce_is_a_sum_over_classes_of_pixel_means():
    """Channels are classes 3 and 4; pixel 0 is class 3, pixel 1 is ignore
    (255): a negative of both classes, as in the official code."""
    label = torch.tensor([[[3, 255]]])
    expected = (bce(0.5, 1, 2.0) + bce(-1.0, 0, 2.0)) / 2 + (
        bce(2.0, 0, 2.0) + bce(0.0, 0, 2.0)
    ) / 2
    loss = mbce_loss(LOGITS, label, first_class=3, pos_weight=2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bce_kd_uses_the_teacher_sigmoid_as_target():
    teacher = torch.tensor([[[[0.0, 1.0]], [[-2.0, 3.0]]]])
    expected = (bce(0.5, sig(0.0)) + bce(-1.0, sig(1.0))) / 2 + (
        bce(2.0, sig(-2.0)) + bce(0.0, sig(3.0))
    ) / 2
    assert bce_kd_loss(LOGITS, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_ac_loss_pushes_the_auxiliary_logit_to_zero_probability():
    aux = torch.tensor([[[[1.0, -2.0]]], [[[0.0, 3.0]]]])  # N=2, C=1, 1x2
    expected = sum(bce(x, 0) for x in (1.0, -2.0, 0.0, 3.0)) / 4
    assert ac_loss(aux).item() == pytest.approx(expected, rel=1e-6)


def test_unbiased_ce_sums_old_probabilities_into_background():
    """Channels: background, old class 1, new class 2; pixel 0 background,
    pixel 1 class 2."""
    logits = torch.tensor([[[[1.0, 0.0]], [[2.0, 1.0]], [[0.5, 3.0]]]])
    label = torch.tensor([[[0, 2]]])

    def log_softmax(values, index_set):
        den = sum(math.exp(v) for v in values)
        return math.log(sum(math.exp(values[i]) for i in index_set) / den)

    pixel0 = -log_softmax([1.0, 2.0, 0.5], [0, 1])
    pixel1 = -log_softmax([0.0, 1.0, 3.0], [2])
    loss = unbiased_ce_loss(logits, label, num_old=2)
    assert loss.item() == pytest.approx((pixel0 + pixel1) / 2, rel=1e-6)


def test_unbiased_ce_at_step_zero_is_cross_entropy():
    logits = torch.randn(2, 3, 4, 4)
    label = torch.randint(0, 3, (2, 4, 4))
    label[0, 0, 0] = 255
    expected = torch.nn.functional.cross_entropy(logits, label, ignore_index=255)
    assert unbiased_ce_loss(logits, label, num_old=1).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


def test_unbiased_kd_sums_new_probabilities_into_background():
    """Student channels background, old 1, new 2; teacher background, old 1;
    one pixel."""
    student = [1.0, 2.0, 0.5]
    teacher = [0.3, -0.7]
    den = sum(math.exp(v) for v in student)
    log_p_bg = math.log((math.exp(1.0) + math.exp(0.5)) / den)
    log_p_old = 2.0 - math.log(den)
    tden = sum(math.exp(v) for v in teacher)
    q = [math.exp(v) / tden for v in teacher]
    expected = -(q[0] * log_p_bg + q[1] * log_p_old) / 2
    loss = unbiased_kd_loss(
        torch.tensor(student).view(1, 3, 1, 1), torch.tensor(teacher).view(1, 2, 1, 1)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)
