"""Calibration training losses usable as an mmpretrain head's ``loss``.

Label smoothing and Mixup come from mmpretrain (``LabelSmoothLoss``, the
``Mixup`` batch augment). mmpretrain's ``FocalLoss`` is the *sigmoid*
(multi-label) focal loss, whereas the calibration literature (and the
RankMixup/MbLS baselines) use the *softmax* focal loss, so it lives here.

Both losses accept hard labels ``(N,)`` or soft targets ``(N, K)`` (as produced
by mmpretrain batch augments) and the keyword arguments mmpretrain heads pass
(``weight``, ``avg_factor``, ``reduction_override``).
"""

from abc import ABCMeta, abstractmethod
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

REDUCTIONS = ('none', 'mean', 'sum')


def _soft_targets(target: torch.Tensor, cls_score: torch.Tensor) -> torch.Tensor:
    """Hard labels ``(N,)`` or soft targets ``(N, K)`` as ``(N, K)`` floats."""
    if target.dim() == 1 or (
        target.dim() == 2 and target.shape[1] == 1 and cls_score.shape[1] != 1
    ):
        labels = target.reshape(-1).long()
        if labels.shape[0] != cls_score.shape[0]:
            raise ValueError(
                f'got {labels.shape[0]} labels for {cls_score.shape[0]} rows '
                f'of scores {tuple(cls_score.shape)}; give one label per '
                f'sample'
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= cls_score.shape[1]):
            raise ValueError(
                f'labels must lie in [0, {cls_score.shape[1]}), got values in '
                f'[{int(labels.min())}, {int(labels.max())}]'
            )
        return F.one_hot(labels, cls_score.shape[1]).to(cls_score)
    if target.shape != cls_score.shape:
        raise ValueError(
            f'soft targets {tuple(target.shape)} must match the '
            f'scores {tuple(cls_score.shape)}'
        )
    return target.to(cls_score)


def _reduce(
    per_sample: torch.Tensor,
    weight: Optional[torch.Tensor],
    reduction: str,
    avg_factor: Optional[float],
) -> torch.Tensor:
    """mmpretrain-style weighting and reduction of per-sample losses."""
    if reduction not in REDUCTIONS:
        raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
    if weight is not None:
        per_sample = per_sample * weight.reshape(-1).to(per_sample)
    if reduction == 'none':
        return per_sample
    if reduction == 'sum':
        return per_sample.sum()
    if avg_factor is None:
        return per_sample.mean()
    return per_sample.sum() / avg_factor


class _ClsLossBase(nn.Module, metaclass=ABCMeta):
    """Reduction and weight handling shared by the losses below.

    Args:
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(
                f'reduction must be one of {REDUCTIONS}, got {reduction!r}'
            )
        self.reduction = reduction
        self.loss_weight = check_number('loss_weight', loss_weight, low=0)

    @abstractmethod
    def per_sample_loss(
        self, cls_score: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample loss ``(N,)`` from scores ``(N, K)`` and soft targets."""

    def forward(
        self,
        cls_score: torch.Tensor,
        label: torch.Tensor,
        weight: Optional[torch.Tensor] = None,
        avg_factor: Optional[float] = None,
        reduction_override: Optional[str] = None,
        **kwargs,
    ) -> torch.Tensor:
        """Compute the weighted, reduced loss.

        Args:
            cls_score (torch.Tensor): Logits ``(N, K)``.
            label (torch.Tensor): Labels ``(N,)`` or soft targets ``(N, K)``.
            weight (torch.Tensor, optional): Per-sample weights ``(N,)``.
            avg_factor (float, optional): Denominator of the 'mean'.
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            torch.Tensor: The loss.
        """
        targets = _soft_targets(label, cls_score)
        per_sample = self.per_sample_loss(cls_score, targets)
        return self.loss_weight * _reduce(
            per_sample, weight, reduction_override or self.reduction, avg_factor
        )


@MODELS.register_module()
class SoftmaxFocalLoss(_ClsLossBase):
    """Softmax focal loss ``-sum_k y_k (1 - p_k)^gamma log p_k``.

    With hard labels this is ``-(1 - p_y)^gamma log p_y`` (Mukhoti et al.
    2020, the focal baseline of the calibration papers; gamma = 3 there).

    Args:
        gamma (float): Focusing parameter (>= 0). Defaults to 3.0.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self, gamma: float = 3.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gamma = check_number('gamma', gamma, low=0)

    def per_sample_loss(
        self, cls_score: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        log_probs = cls_score.log_softmax(dim=1)
        focal = (1 - log_probs.exp()).pow(self.gamma)
        return -(targets * focal * log_probs).sum(dim=1)


@MODELS.register_module()
class MarginLogitSmoothLoss(_ClsLossBase):
    """Margin-based label smoothing (MbLS, Liu et al. CVPR 2022).

    ``CE(z, y) + alpha * mean_k relu(max_j z_j - z_k - margin)``: cross-entropy
    plus a hinge on the logit distances larger than ``margin``.

    Args:
        margin (float): Allowed logit distance. Defaults to 6.0 (the setting
            of the RankMixup repository's MbLS baseline; 10 in the MbLS
            paper).
        alpha (float): Weight of the margin term. Defaults to 0.1.
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Weight of the whole loss. Defaults to 1.0.
    """

    def __init__(self, margin: float = 6.0, alpha: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.margin = check_number('margin', margin, low=0)
        self.alpha = check_number('alpha', alpha, low=0)

    def per_sample_loss(
        self, cls_score: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        cross_entropy = -(targets * cls_score.log_softmax(dim=1)).sum(dim=1)
        distance = cls_score.max(dim=1, keepdim=True).values - cls_score
        hinge = F.relu(distance - self.margin).mean(dim=1)
        return cross_entropy + self.alpha * hinge
