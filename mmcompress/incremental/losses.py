"""Losses of class-incremental segmentation: DKD (sigmoid) and MiB (softmax).

DKD (Baek et al., NeurIPS 2022; official ``models/loss.py`` and
``trainer/trainer_voc.py``). Every term is a binary cross-entropy with
logits that is averaged over batch and pixels per class and then **summed
over classes**:

* :func:`mbce_loss`: the new classes' logits against one-hot labels; every
  pixel that is not of the class is a negative, ignored (255) pixels
  included (the official code does not exclude them), with ``pos_weight``;
* :func:`bce_kd_loss`: student logits against the sigmoid of the frozen
  previous model's logits (KD on the full-resolution old-class logits, and
  DKD-pos / DKD-neg on the positive / negative reasoning at feature
  resolution);
* :func:`ac_loss`: the auxiliary classifier's logit against 0 everywhere.

MiB (Cermelli et al., CVPR 2020): :func:`unbiased_ce_loss` and
:func:`unbiased_kd_loss` on softmax logits whose channel 0 is background.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _bce_sum_of_class_means(
    logits: Tensor, target: Tensor, pos_weight: Optional[Tensor] = None
) -> Tensor:
    """BCE with logits, mean over (N, H, W) per class, summed over classes."""
    loss = F.binary_cross_entropy_with_logits(
        logits, target, reduction='none', pos_weight=pos_weight
    )
    return loss.mean(dim=(0, 2, 3)).sum()


def mbce_loss(
    logits: Tensor,
    label: Tensor,
    first_class: int,
    pos_weight: float = 1.0,
) -> Tensor:
    """Binary cross-entropy of the step's new classes (DKD's L_mbce).

    Args:
        logits (Tensor): (N, K, H, W) logits of the K new classes.
        label (Tensor): (N, H, W) labels; class ``first_class + k`` is
            channel ``k``, every other value (background, ignore) is a
            negative of every channel.
        first_class (int): Label of channel 0.
        pos_weight (float): Weight of the positive term. Defaults to 1.

    Returns:
        Tensor: The scalar loss.
    """
    channels = torch.arange(
        first_class, first_class + logits.shape[1], device=label.device
    )
    target = (label.unsqueeze(1) == channels.view(1, -1, 1, 1)).to(logits.dtype)
    weight = torch.full(
        (logits.shape[1], 1, 1), float(pos_weight), device=logits.device
    )
    return _bce_sum_of_class_means(logits, target, weight)


def bce_kd_loss(logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """BCE of ``logits`` against ``sigmoid(teacher_logits)`` (DKD's L_kd,
    L_dkd_pos and L_dkd_neg).

    Args:
        logits (Tensor): (N, C, H, W) student values.
        teacher_logits (Tensor): (N, C, H, W) previous model's values.

    Returns:
        Tensor: The scalar loss.
    """
    return _bce_sum_of_class_means(logits, teacher_logits.sigmoid())


def ac_loss(aux_logits: Tensor) -> Tensor:
    """BCE of the auxiliary classifier against 0 (DKD's L_ac).

    Args:
        aux_logits (Tensor): (N, 1, H, W) auxiliary logits.

    Returns:
        Tensor: The scalar loss.
    """
    return _bce_sum_of_class_means(aux_logits, torch.zeros_like(aux_logits))


def unbiased_ce_loss(
    logits: Tensor, label: Tensor, num_old: int, ignore_index: int = 255
) -> Tensor:
    """MiB's unbiased cross-entropy: background is background or any old
    class.

    Args:
        logits (Tensor): (N, C, H, W) logits, channel 0 background, channels
            ``1..num_old-1`` old classes, the rest new.
        label (Tensor): (N, H, W) labels (old classes already background).
        num_old (int): Background plus old classes (1 at step 0: plain CE).
        ignore_index (int): Label excluded from the mean. Defaults to 255.

    Returns:
        Tensor: The scalar loss (mean over non-ignored pixels).
    """
    den = torch.logsumexp(logits, dim=1, keepdim=True)
    background = torch.logsumexp(logits[:, :num_old], dim=1, keepdim=True)
    log_prob = torch.cat([background, logits[:, num_old:]], dim=1) - den
    target = torch.where(label >= num_old, label - num_old + 1, 0)
    target = torch.where(label == ignore_index, label, target)
    return F.nll_loss(log_prob, target.long(), ignore_index=ignore_index)


def unbiased_kd_loss(logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """MiB's unbiased KD: the student's background is background or any new
    class.

    Args:
        logits (Tensor): (N, C, H, W) student logits (background, old, new).
        teacher_logits (Tensor): (N, C_old, H, W) previous model's logits
            (background and old classes).

    Returns:
        Tensor: ``-mean over pixels of sum_c q_c log p_c / C_old``.
    """
    num_old = teacher_logits.shape[1]
    den = torch.logsumexp(logits, dim=1, keepdim=True)
    background = torch.logsumexp(
        torch.cat([logits[:, :1], logits[:, num_old:]], dim=1), dim=1, keepdim=True
    )
    log_prob = torch.cat([background, logits[:, 1:num_old]], dim=1) - den
    soft = teacher_logits.softmax(dim=1)
    return -((soft * log_prob).sum(dim=1) / num_old).mean()
