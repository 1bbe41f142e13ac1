"""Bad input to DWPose's pose distillation: the keypoint logit loss and the
loss-weight decay of its first stage."""

import pytest
import torch

from mmcompress.distill import LossWeightSchedule
from mmcompress.distill.losses import DWPoseKDLoss


def test_dwpose_kd_on_pooled_logits():
    """DWPoseKDLoss recorded on a layer whose output has no keypoint bins.

    Message: must be N x K x L SimCC logits or N x K x H x W heatmaps
    """
    with pytest.raises(
        ValueError,
        match=r'DWPoseKDLoss: the student input must be N x K x L SimCC logits '
        r'or N x K x H x W heatmaps \(3 or 4 dims\), got shape \(2, 5\)',
    ):
        DWPoseKDLoss()(torch.zeros(2, 5), torch.zeros(2, 5))


def test_dwpose_kd_student_and_teacher_heatmaps_of_other_sizes():
    """A student with 16 x 16 heatmaps distilled from a teacher with 32 x 32.

    Message: must agree in every dimension; add an adapter
    """
    with pytest.raises(
        ValueError,
        match=r'student shape \(2, 5, 16, 16\) and teacher shape \(2, 5, 32, 32\) '
        r'must agree in every dimension; add an adapter',
    ):
        DWPoseKDLoss()(torch.zeros(2, 5, 16, 16), torch.zeros(2, 5, 32, 32))


def test_schedule_decay_misspelled():
    """A distillation schedule with decay='linear' instead of 'epoch' or 'iter'.

    Message: schedule decay must be None, 'epoch' or 'iter', got 'linear'
    """
    with pytest.raises(
        ValueError,
        match=r"schedule decay must be None, 'epoch' or 'iter', got 'linear'",
    ):
        LossWeightSchedule(decay='linear')
