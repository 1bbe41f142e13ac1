"""Dense-detector distillation losses on per-anchor predictions: BCKD's
binary classification and IoU localisation losses (Yang et al., ICCV 2023)
and the LD-style softmax-KL baseline.

All three take per-anchor tensors of one FPN level (A anchors), an optional
per-anchor ``weight`` (A,) (the head's label weights) and ``avg_factor``, the
normaliser (BCKD: the number of positive anchors in the batch averaged over
GPUs and clamped to >= 1, computed by the head). Without ``avg_factor`` the
weighted sum is divided by A.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

from mmcompress.registry import MODELS

from .base import (
    DistillLoss,
    check_choice,
    check_ndim,
    check_positive,
    check_same_dims,
    soft_kl_divergence,
)


def weighted_anchor_sum(
    loss: torch.Tensor,
    weight: Optional[torch.Tensor],
    avg_factor: Optional[float],
    loss_name: str,
) -> torch.Tensor:
    """``sum_a(w_a * loss_a) / avg_factor`` for a per-anchor loss (A,).

    Args:
        loss (Tensor): Per-anchor loss (A,).
        weight (Tensor, optional): Per-anchor weights (A,).
        avg_factor (float, optional): Normaliser; None means A.
        loss_name (str): Name of the loss, used in messages.

    Returns:
        Tensor: The normalised weighted sum.
    """
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(
            loss.shape
        ):
            shape = (
                tuple(weight.shape)
                if isinstance(weight, torch.Tensor)
                else type(weight).__name__
            )
            raise ValueError(
                f'{loss_name}: weight must be a Tensor of '
                f'shape {tuple(loss.shape)} (one per anchor), '
                f'got {shape}'
            )
        loss = loss * weight.detach()
    if avg_factor is None:
        avg_factor = max(loss.numel(), 1)
    elif not 0 < float(avg_factor) < math.inf:
        raise ValueError(
            f'{loss_name}: avg_factor must be > 0 and finite '
            f'(the number of positive anchors, clamped to >= 1 by '
            f'the head), got {avg_factor}'
        )
    return loss.sum() / avg_factor


def _check_anchor_logits(
    loss_name: str, pred_S: torch.Tensor, pred_T: torch.Tensor, what: str
) -> None:
    """Both inputs must be (A, K) with the same shape."""
    check_ndim(loss_name, pred_S, 'student', (2,), f'A x {what}')
    check_same_dims(loss_name, pred_S, pred_T, (0, 1), 'every dimension')


def _skip_level(skip: bool, num_level_positives: Optional[int]) -> bool:
    """Whether the official 'no positive in the level -> no KD' rule
    applies to this call."""
    return skip and num_level_positives is not None and int(num_level_positives) == 0


@MODELS.register_module()
class BCKDClassificationLoss(DistillLoss):
    """BCKD binary-classification distillation (after fix ``851f5b4``).

    With student / teacher class logits s, t of shape (A, C),
    :math:`p = sigmoid(\\cdot)`:

    .. math::
        l_a = \\sum_c BCE(s_{ac}, p_t{}_{ac}) \\, |p_t{}_{ac} -
              p_s{}_{ac}|^\\beta, \\quad
        L = \\sum_a w_a l_a / avg\\_factor

    Official behaviour (the defaults): temperature 1 (the official class
    stores T=10 and threshold 0.05 but never uses them), beta=1, the
    modulating factor keeps its gradient (``detach_modulation=False``), loss
    weight 1.0 in the released config, and an FPN level without any positive
    anchor gets no distillation loss (``skip_level_without_positives=True``,
    applied when the head passes ``num_level_positives``).

    Args:
        beta (float): Exponent of the modulating factor. Defaults to 1.0.
        detach_modulation (bool): Stop the gradient through
            ``|p_t - p_s|^beta``. Defaults to False (official).
        skip_level_without_positives (bool): Return 0 when
            ``num_level_positives == 0``. Defaults to True (official).
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        beta: float = 1.0,
        detach_modulation: bool = False,
        skip_level_without_positives: bool = True,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(loss_weight)
        self.beta = check_positive('beta', beta, allow_zero=True)
        self.detach_modulation = bool(detach_modulation)
        self.skip_level_without_positives = bool(skip_level_without_positives)

    def loss_single(
        self,
        pred_S: torch.Tensor,
        pred_T: torch.Tensor,
        weight: Optional[torch.Tensor] = None,
        avg_factor: Optional[float] = None,
        num_level_positives: Optional[int] = None,
        **kwargs,
    ) -> torch.Tensor:
        """Args: class logits (A, C) of student and teacher; ``weight``
        (A,), ``avg_factor`` and ``num_level_positives`` as described in the
        class docstring."""
        _check_anchor_logits(self.loss_name, pred_S, pred_T, 'C class logits')
        if _skip_level(self.skip_level_without_positives, num_level_positives):
            return pred_S.sum() * 0
        probs_T = pred_T.sigmoid()
        modulation = (probs_T - pred_S.sigmoid()).abs().pow(self.beta)
        if self.detach_modulation:
            modulation = modulation.detach()
        per_anchor = (
            F.binary_cross_entropy_with_logits(pred_S, probs_T, reduction='none')
            * modulation
        ).sum(dim=1)
        return weighted_anchor_sum(per_anchor, weight, avg_factor, self.loss_name)


def aligned_iou(
    boxes_a: torch.Tensor, boxes_b: torch.Tensor, mode: str = 'giou', eps: float = 1e-6
) -> torch.Tensor:
    """IoU or GIoU of aligned box pairs in (x1, y1, x2, y2) format.

    Args:
        boxes_a (Tensor): Boxes (A, 4).
        boxes_b (Tensor): Boxes (A, 4).
        mode (str): ``'iou'`` or ``'giou'``. Defaults to ``'giou'``.
        eps (float): Lower bound of the union and enclosing areas.
            Defaults to 1e-6 (as mmdet's ``bbox_overlaps``).

    Returns:
        Tensor: (G)IoU per pair, (A,).
    """
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    inter_wh = (
        torch.min(boxes_a[:, 2:], boxes_b[:, 2:])
        - torch.max(boxes_a[:, :2], boxes_b[:, :2])
    ).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = (area_a + area_b - inter).clamp(min=eps)
    iou = inter / union
    if mode == 'iou':
        return iou
    enclose_wh = (
        torch.max(boxes_a[:, 2:], boxes_b[:, 2:])
        - torch.min(boxes_a[:, :2], boxes_b[:, :2])
    ).clamp(min=0)
    enclose = (enclose_wh[:, 0] * enclose_wh[:, 1]).clamp(min=eps)
    return iou - (enclose - union) / enclose


@MODELS.register_module()
class BCKDLocalizationLoss(DistillLoss):
    """BCKD IoU-based localisation distillation.

    ``preds_S`` / ``preds_T`` are the boxes each model decoded from its own
    regression output on the shared anchors, (A, 4) in (x1, y1, x2, y2); the
    class logits of both models give the per-anchor weight (detached):

    .. math::
        w^{loc}_a = w_a \\max_c |sigmoid(t_{ac}) - sigmoid(s_{ac})|

    .. math::
        L = \\sum_a w^{loc}_a (1 - GIoU(b^S_a, b^T_a)) / avg\\_factor

    on all anchors of the level, negatives included. Defaults are the
    released config: GIoU (``iou_mode='giou'``; the paper's text says 1-IoU,
    selectable with ``'iou'``) and loss weight 4.0; a level without positive
    anchors gets no loss when the head passes ``num_level_positives=0``
    (``skip_level_without_positives``).

    Args:
        iou_mode (str): ``'giou'`` or ``'iou'``. Defaults to ``'giou'``.
        eps (float): Area lower bound in the (G)IoU. Defaults to 1e-6.
        skip_level_without_positives (bool): Return 0 when
            ``num_level_positives == 0``. Defaults to True (official).
        loss_weight (float): Multiplier of the loss. Defaults to 4.0
            (official).
    """

    def __init__(
        self,
        iou_mode: str = 'giou',
        eps: float = 1e-6,
        skip_level_without_positives: bool = True,
        loss_weight: float = 4.0,
    ) -> None:
        super().__init__(loss_weight)
        check_choice('iou_mode', iou_mode, ('giou', 'iou'))
        self.iou_mode = iou_mode
        self.eps = check_positive('eps', eps)
        self.skip_level_without_positives = bool(skip_level_without_positives)

    def loss_single(
        self,
        pred_S: torch.Tensor,
        pred_T: torch.Tensor,
        cls_scores_S: torch.Tensor = None,
        cls_scores_T: torch.Tensor = None,
        weight: Optional[torch.Tensor] = None,
        avg_factor: Optional[float] = None,
        num_level_positives: Optional[int] = None,
        **kwargs,
    ) -> torch.Tensor:
        """Args: decoded boxes (A, 4) of student and teacher;
        ``cls_scores_S`` / ``cls_scores_T``: class logits (A, C); ``weight``,
        ``avg_factor``, ``num_level_positives`` as in the class docstring."""
        check_ndim(self.loss_name, pred_S, 'student', (2,), 'A x 4 boxes')
        check_same_dims(self.loss_name, pred_S, pred_T, (0, 1), 'every dimension')
        if pred_S.shape[1] != 4:
            raise ValueError(
                f'{self.loss_name}: boxes must be A x 4 '
                f'(x1, y1, x2, y2), got {tuple(pred_S.shape)}'
            )
        if cls_scores_S is None or cls_scores_T is None:
            raise ValueError(
                f'{self.loss_name} needs cls_scores_S and '
                f'cls_scores_T (A x C class logits) to weight '
                f'the anchors'
            )
        _check_anchor_logits(
            self.loss_name, cls_scores_S, cls_scores_T, 'C class logits'
        )
        if cls_scores_S.shape[0] != pred_S.shape[0]:
            raise ValueError(
                f'{self.loss_name}: {pred_S.shape[0]} boxes but '
                f'class logits of shape '
                f'{tuple(cls_scores_S.shape)}'
            )
        if _skip_level(self.skip_level_without_positives, num_level_positives):
            return pred_S.sum() * 0
        disagreement = (
            (cls_scores_T.detach().sigmoid() - cls_scores_S.detach().sigmoid())
            .abs()
            .max(dim=1)[0]
        )
        iou = aligned_iou(pred_S, pred_T, self.iou_mode, self.eps)
        loss = weighted_anchor_sum(
            (1 - iou) * disagreement, weight, avg_factor, self.loss_name
        )
        return loss


@MODELS.register_module()
class DenseSoftmaxKDLoss(DistillLoss):
    """LD-style softmax-KL distillation of per-anchor distributions.

    For per-anchor logits (A, K) (class scores, or box-side distributions
    reshaped to (4A, n+1) for localisation distillation):

    .. math::
        l_a = \\tau^2 \\, mean_k \\big[q_{ak} (\\log q_{ak} - \\log
              p_{ak})\\big], \\quad L = \\sum_a w_a l_a / avg\\_factor

    with :math:`q = softmax(t/\\tau)`, :math:`p = softmax(s/\\tau)`; the mean
    over K is what the LD code (mmdet's ``KnowledgeDistillationKLDivLoss``)
    does. LD's classification KD used tau=2 with loss weight 10, its
    localisation distillation tau=10 with weight 0.25. This is the baseline
    BCKD is compared with.

    Args:
        tau (float): Temperature. Defaults to 2.0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, tau: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.tau = check_positive('tau', tau)

    def loss_single(
        self,
        pred_S: torch.Tensor,
        pred_T: torch.Tensor,
        weight: Optional[torch.Tensor] = None,
        avg_factor: Optional[float] = None,
        **kwargs,
    ) -> torch.Tensor:
        """Args: logits (A, K) of student and teacher; ``weight`` (A,) and
        ``avg_factor`` as in the module docstring."""
        _check_anchor_logits(self.loss_name, pred_S, pred_T, 'K logits')
        per_anchor = soft_kl_divergence(
            pred_S, pred_T, self.tau, reduction='none'
        ).mean(dim=1)
        return weighted_anchor_sum(per_anchor, weight, avg_factor, self.loss_name)
