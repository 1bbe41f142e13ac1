"""Calling one distillation entry's loss on the recorded values: the
arguments a loss asks for, float32 outside autocast, ground-truth labels, and
the zero of a scheduled-off entry, the warning for a student value without
gradient."""

import inspect
from typing import List, Optional, Sequence

import torch
from mmengine.logging import print_log
from torch import nn


def loss_kwarg_names(loss: nn.Module) -> set:
    """Names of the arguments ``loss`` accepts (``forward`` and, for
    ``DistillLoss``, ``loss_single``), to pass only those it asks for.

    Args:
        loss (nn.Module): A distillation loss.

    Returns:
        set[str]: The argument names.
    """
    names = set()
    for fn in (loss.forward, getattr(loss, 'loss_single', None)):
        if fn is not None:
            names.update(inspect.signature(fn).parameters)
    return names


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


def call_loss(
    loss: nn.Module,
    accepted: set,
    feats_S: List[torch.Tensor],
    feats_T: List[torch.Tensor],
    **available,
):
    """``loss(preds_S, preds_T, **kw)`` in float32 outside autocast (softmax
    with temperatures and feature statistics are fragile in fp16/bf16).

    Args:
        loss (nn.Module): The entry's loss.
        accepted (set[str]): Its argument names (:func:`loss_kwarg_names`).
        feats_S (list[Tensor]): Student values (one tensor is passed alone).
        feats_T (list[Tensor]): Teacher values.
        **available: Candidate keyword arguments (``gt_labels``,
            ``data_samples``, ``student_model``, ``teacher_model``); those the
            loss accepts and that are not None are passed.

    Returns:
        Tensor | dict[str, Tensor]: The loss value or its named terms.
    """
    kwargs = {
        k: v
        for k, v in available.items()
        if k in accepted and (v is not None or k == 'data_samples')
    }
    feats_S = [_to_float32(f) for f in feats_S]
    feats_T = [_to_float32(f) for f in feats_T]
    with torch.autocast(feats_S[0].device.type, enabled=False):
        if len(feats_S) == 1:
            return loss(feats_S[0], feats_T[0], **kwargs)
        return loss(feats_S, feats_T, **kwargs)


def gt_labels_of(data_samples: Optional[list], entry_name: str) -> torch.Tensor:
    """The class label of each data sample (first ``gt_label`` value).

    Args:
        data_samples (list, optional): Data samples of the batch.
        entry_name (str): Entry whose loss needs them, used in the message.

    Returns:
        Tensor: Labels of shape (N, ).
    """
    if not data_samples or not all(hasattr(s, 'gt_label') for s in data_samples):
        raise ValueError(
            f'Distill entry {entry_name!r}: its loss needs gt_labels, but '
            'the data samples have no `gt_label` (classification data '
            'samples do).'
        )
    return torch.cat([s.gt_label.view(-1)[:1] for s in data_samples])


def zero_loss(
    modules: Sequence[Optional[nn.Module]], like: torch.Tensor
) -> torch.Tensor:
    """A zero that still touches the trainable parameters of ``modules`` (an
    entry's adapter and loss), so DDP without ``find_unused_parameters`` sees
    them used.

    Args:
        modules (Sequence[nn.Module | None]): Modules of the entry.
        like (Tensor): Gives device and dtype when there is no parameter.

    Returns:
        Tensor: A scalar zero.
    """
    params = [
        p
        for module in modules
        if module is not None
        for p in module.parameters()
        if p.requires_grad
    ]
    if not params:
        return like.new_zeros(())
    return sum(p.sum() for p in params) * 0.0


def warn_if_no_student_grad(entry_name: str, feats_S: List[torch.Tensor]) -> bool:
    """Warn when a recorded student value does not require grad (so the
    entry cannot train the student through it).

    Args:
        entry_name (str): The entry, used in the message.
        feats_S (list[Tensor]): Its recorded student values.

    Returns:
        bool: Whether it warned (the caller warns once per entry).
    """
    if not torch.is_grad_enabled() or all(f.requires_grad for f in feats_S):
        return False
    print_log(
        f'Distill entry {entry_name!r}: a recorded student tensor does not '
        'require grad, so the distillation loss cannot train the student '
        'through it (recorded inside a reentrant gradient-checkpointed '
        'block, or an input?). Record the enclosing module instead.',
        logger='current',
        level=30,
    )
    return True
