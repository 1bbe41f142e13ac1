"""Pose distillation losses: DWPose's keypoint logit distillation."""

import torch
import torch.nn.functional as F

from mmcompress.registry import MODELS

from .base import (
    DistillLoss,
    check_ndim,
    check_positive,
    check_same_dims,
    kl_div_from_log_probs,
)


@MODELS.register_module()
class DWPoseKDLoss(DistillLoss):
    """Keypoint logit distillation of DWPose (Yang et al., "Effective
    Whole-body Pose Estimation with Two-stages Distillation", ICCVW 2023).

    Each keypoint's logits over its L bins (one SimCC axis, or the H*W
    pixels of a heatmap) become a distribution :math:`softmax(\\beta z)`;
    the loss is the KL divergence from the teacher's to the student's,
    summed over the bins and averaged over the N samples and K keypoints:

    .. math::
        L = \\frac{1}{N K} \\sum_{n,k} KL(softmax(\\beta T_{nk}) \\,\\|\\,
            softmax(\\beta S_{nk}))

    Every keypoint counts, visible or not (the official code takes the
    target weights but does not use them). SimCC heads give an ``(x, y)``
    pair: passed as two levels, the loss is the sum of both axes, which is
    the official ``KDLoss`` (``(L_x + L_y) / K`` with the per-axis sums over
    keypoints). ``beta`` multiplies the logits as ``beta`` of mmpose's
    ``KLDiscretLoss`` does (10 in RTMPose, passed on by the official
    distiller); there is no ``tau^2`` factor. Official weights:
    ``loss_weight=0.1`` in the first stage (with the linear weight decay,
    ``schedule=dict(decay='epoch')``), 1 in the second.

    Args:
        beta (float): Multiplier of the logits before the softmax.
            Defaults to 10.0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    #: Dimension 1 holds keypoints: automatic adapters must not mix them (a
    #: keypoint-count mismatch is an error; heatmaps may only be resized).
    compares_class_distributions = True

    def __init__(self, beta: float = 10.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.beta = check_positive('beta', beta)

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: SimCC logits (N, K, L) or heatmaps (N, K, H, W), same shape."""
        check_ndim(
            self.loss_name,
            pred_S,
            'student',
            (3, 4),
            'N x K x L SimCC logits or N x K x H x W heatmaps',
        )
        check_same_dims(
            self.loss_name, pred_S, pred_T, range(pred_S.ndim), 'every dimension'
        )
        log_probs_S = F.log_softmax(pred_S.flatten(2) * self.beta, dim=2)
        probs_T = F.softmax(pred_T.flatten(2) * self.beta, dim=2)
        return kl_div_from_log_probs(log_probs_S, probs_T).sum(dim=2).mean()
