"""Distillation losses for dense maps: channel-wise distillation (CWD)."""

import torch

from mmcompress.registry import MODELS

from .base import (
    DistillLoss,
    check_ndim,
    check_positive,
    check_same_dims,
    soft_kl_divergence,
)


@MODELS.register_module()
class ChannelWiseDivergenceLoss(DistillLoss):
    """Channel-wise distillation (Shu et al., ICCV 2021).

    Each channel of an (N, C, H, W) map becomes a distribution over the H*W
    locations, :math:`softmax(x_{nc}/\\tau)`:

    .. math::
        L = \\tau^2 \\sum_{n,c} KL(softmax(T_{nc}/\\tau) \\,\\|\\,
            softmax(S_{nc}/\\tau)) / (N \\cdot C)

    Default tau=1 as mmrazor's CWD configs (segmentation logits with
    loss_weight 5, detection FPN levels with loss_weight 10); the CWD paper
    reports tau=4 for segmentation (unverified). Student and teacher must
    have the same shape.

    Args:
        tau (float): Temperature. Defaults to 1.0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.tau = check_positive('tau', tau)

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: maps of identical shape (N, C, H, W)."""
        check_ndim(self.loss_name, pred_S, 'student', (4,), 'N x C x H x W')
        check_same_dims(
            self.loss_name, pred_S, pred_T, range(pred_S.ndim), 'every dimension'
        )
        return soft_kl_divergence(
            pred_S.flatten(0, 1).flatten(1),
            pred_T.flatten(0, 1).flatten(1),
            self.tau,
            'batchmean',
        )
