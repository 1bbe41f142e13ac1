"""The losses of BiSMAP self-training, as its official ``loss/loss.py`` and model.

* :func:`pixel_weighted_ce`: source cross-entropy times the transferability
  weights, summed and divided by the number of labelled pixels.
* :func:`symmetric_ce`: target loss on pseudo-labels,
  ``alpha * CE + beta * RCE`` with ``RCE = -sum_c p_c log(clamp(onehot, 1e-4, 1))``
  (official alpha 0.1, beta 1.0, probabilities clamped at 1e-7).
* :func:`consistency_kl` and :func:`consistency_ramp`: the EMA-teacher term
  ``30 * exp(-5 (1 - min(it, 4000) / 4000)^2) * KLDivLoss(log_softmax(student),
  softmax(teacher))`` over the pixels outside the cut-out, with torch's default
  ``'mean'`` reduction (over pixels *and* classes) as in the official code.
* :func:`distill_kl`: the distillation round's KD term; ``official_bug=True``
  reproduces the official ``F.kl_div(softmax(s), softmax(t))`` (probabilities
  passed where log-probabilities are expected), the default is the correct
  ``KL(teacher || student)``.
"""

import math

import torch
import torch.nn.functional as F


def pixel_weighted_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """``sum(CE * w) / #labelled pixels``.

    Args:
        logits (Tensor): ``(B, C, H, W)``.
        target (Tensor): ``(B, H, W)`` labels.
        weights (Tensor, optional): ``(B, H, W)`` pixel weights; None: ones.
        ignore_index (int): Unlabelled value. Defaults to 255.

    Returns:
        Tensor: Scalar loss (0 when no pixel is labelled).
    """
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction='none')
    if weights is not None:
        ce = ce * weights
    return ce.sum() / (target != ignore_index).sum().clamp_min(1)


def symmetric_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.1,
    beta: float = 1.0,
    ignore_index: int = 255,
) -> torch.Tensor:
    """``alpha * CE + beta * RCE`` over labelled pixels (official ``sceloss``).

    Args:
        logits (Tensor): ``(B, C, H, W)``.
        target (Tensor): ``(B, H, W)`` pseudo-labels.
        alpha (float): CE weight. Defaults to 0.1.
        beta (float): Reverse-CE weight. Defaults to 1.0.
        ignore_index (int): Unlabelled value. Defaults to 255.

    Returns:
        Tensor: Scalar loss (0 when no pixel is labelled).
    """
    mask = target != ignore_index
    if not mask.any():
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    prob = F.softmax(logits, dim=1).clamp(1e-7, 1.0)
    safe = torch.where(mask, target, 0)
    p_true = prob.gather(1, safe.unsqueeze(1)).squeeze(1)
    # -sum_c p_c log(clamp(onehot_c, 1e-4, 1)) = -log(1e-4) * (1 - p_true)
    rce = -math.log(1e-4) * (prob.sum(1) - p_true)
    rce = (rce * mask).sum() / mask.sum()
    return alpha * ce + beta * rce


def consistency_ramp(iteration: int, rampup: int = 4000) -> float:
    """``exp(-5 (1 - min(it, rampup) / rampup)^2)``; 1 for ``rampup=0``."""
    if rampup <= 0:
        return 1.0
    phase = 1.0 - min(max(iteration, 0), rampup) / rampup
    return float(math.exp(-5.0 * phase * phase))


def consistency_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    keep: torch.Tensor = None,
) -> torch.Tensor:
    """``KLDivLoss()(log_softmax(student), softmax(teacher))`` on kept pixels.

    Args:
        student_logits (Tensor): ``(B, C, H, W)``.
        teacher_logits (Tensor): ``(B, C, H, W)``, no gradient.
        keep (Tensor, optional): ``(B, H, W)`` bool, pixels that count (outside
            the cut-out). None: all.

    Returns:
        Tensor: Mean over kept pixels and classes.
    """
    log_s = F.log_softmax(student_logits, dim=1)
    p_t = F.softmax(teacher_logits.detach(), dim=1)
    kl = F.kl_div(log_s, p_t, reduction='none').sum(1)
    if keep is None:
        return kl.mean() / student_logits.shape[1]
    count = keep.sum() * student_logits.shape[1]
    return (kl * keep).sum() / count.clamp_min(1)


def distill_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    official_bug: bool = False,
) -> torch.Tensor:
    """The distillation round's KD term, mean over pixels and classes.

    Args:
        student_logits (Tensor): ``(B, C, H, W)``.
        teacher_logits (Tensor): ``(B, C, H, W)``, no gradient.
        official_bug (bool): Reproduce the official
            ``F.kl_div(softmax(s), softmax(t))``, i.e. ``p_t (log p_t - p_s)``,
            whose gradient pushes ``p_s`` up everywhere instead of towards
            ``p_t``. Defaults to False (``p_t (log p_t - log p_s)``).

    Returns:
        Tensor: Scalar loss.
    """
    p_t = F.softmax(teacher_logits.detach(), dim=1)
    if official_bug:
        student = F.softmax(student_logits, dim=1)
    else:
        student = F.log_softmax(student_logits, dim=1)
    return F.kl_div(student, p_t, reduction='none').mean()
