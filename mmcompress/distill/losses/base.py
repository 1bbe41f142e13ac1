"""Shared pieces of the distillation losses: the common interface, input checks
and the soft-label KL divergence every logit loss builds on.

Every loss in :mod:`mmcompress.distill.losses` follows one contract, relied on
by ``DistillModel``:

* ``__init__(..., loss_weight=1.0)``;
* ``forward(preds_S, preds_T, **kwargs) -> Tensor``: a scalar already
  multiplied by ``loss_weight``; the teacher input is detached;
* ``preds_S`` / ``preds_T`` may also be equally long lists or tuples of tensors
  (e.g. all FPN levels recorded by one entry); the loss is then the sum of the
  per-level losses;
* an empty batch (student and teacher with 0 as first dimension) gives a loss of
  exactly 0 that is still connected to the student input and to the loss's own
  parameters (zero gradients, so backward and DDP run as for any batch), with a
  warning the first time; a student/teacher pair where only one side is empty
  raises a ``ValueError`` (:meth:`DistillLoss.level_loss`).
"""

import warnings
from abc import ABCMeta, abstractmethod
from typing import Iterable, List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.utils.checks import check_number

TensorOrSeq = Union[torch.Tensor, Sequence[torch.Tensor]]

ADAPTER_HINT = (
    'add an adapter (connector) that maps the student feature to '
    "the teacher's shape, e.g. a 1x1 conv + BN for channels or a "
    'resize for the spatial size'
)


def check_choice(arg_name: str, value, choices: Iterable) -> None:
    """Raise a ValueError unless ``value`` is one of ``choices``.

    Args:
        arg_name (str): Name of the argument, used in the message.
        value: The value given.
        choices (Iterable): The valid values.
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f'{arg_name} must be one of {choices}, got {value!r}')


def check_positive(arg_name: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as float after checking that it is a finite positive
    number (NaN and inf are refused, see :func:`check_number`).

    Args:
        arg_name (str): Name of the argument, used in the message.
        value: The value given.
        allow_zero (bool): Whether 0 is valid. Defaults to False.

    Returns:
        float: ``value``.
    """
    return check_number(arg_name, value, low=0, low_open=not allow_zero)


def check_ndim(
    loss_name: str,
    tensor: torch.Tensor,
    role: str,
    valid_ndims: Tuple[int, ...],
    layout: str,
) -> None:
    """Raise a ValueError unless ``tensor.ndim`` is one of ``valid_ndims``.

    Args:
        loss_name (str): Name of the loss, used in the message.
        tensor (Tensor): The input to check.
        role (str): What the tensor is (``'student'``, ``'teacher'``...).
        valid_ndims (tuple[int]): Accepted numbers of dimensions.
        layout (str): Human-readable expected layout, e.g. ``'N x C x H x W'``.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(
            f'{loss_name}: the {role} input must be a Tensor, '
            f'got {type(tensor).__name__}'
        )
    if tensor.ndim not in valid_ndims:
        raise ValueError(
            f'{loss_name}: the {role} input must be {layout} '
            f'({" or ".join(map(str, valid_ndims))} dims), got '
            f'shape {tuple(tensor.shape)}'
        )


def check_feature_maps(
    loss_name: str, pred_S: torch.Tensor, pred_T: torch.Tensor
) -> None:
    """Raise unless the student and teacher inputs are both N x C x H x W maps.

    Args:
        loss_name (str): Name of the loss, used in the message.
        pred_S (Tensor): The student input.
        pred_T (Tensor): The teacher input.
    """
    check_ndim(loss_name, pred_S, 'student', (4,), 'N x C x H x W')
    check_ndim(loss_name, pred_T, 'teacher', (4,), 'N x C x H x W')


def check_same_dims(
    loss_name: str,
    pred_S: torch.Tensor,
    pred_T: torch.Tensor,
    dims: Sequence[int],
    what: str,
) -> None:
    """Raise a ValueError when student and teacher differ in ``dims``.

    Args:
        loss_name (str): Name of the loss, used in the message.
        pred_S (Tensor): Student input.
        pred_T (Tensor): Teacher input.
        dims (Sequence[int]): Dimensions that must agree.
        what (str): What these dimensions are, e.g. ``'channels'``.
    """
    if pred_S.ndim != pred_T.ndim or any(
        pred_S.shape[d] != pred_T.shape[d] for d in dims
    ):
        raise ValueError(
            f'{loss_name}: student shape {tuple(pred_S.shape)} and teacher '
            f'shape {tuple(pred_T.shape)} must agree in {what}; '
            f'{ADAPTER_HINT}.'
        )


def check_labels(
    loss_name: str, gt_labels, num_samples: int, num_classes: int
) -> torch.Tensor:
    """Validate class-index labels of shape (N,).

    Args:
        loss_name (str): Name of the loss, used in the message.
        gt_labels: The labels given.
        num_samples (int): Expected N.
        num_classes (int): Number of classes C; labels must lie in [0, C).

    Returns:
        Tensor: The labels as a LongTensor of shape (N,).
    """
    if not isinstance(gt_labels, torch.Tensor):
        raise TypeError(
            f'{loss_name} needs gt_labels as a LongTensor of '
            f'shape ({num_samples},), got '
            f'{type(gt_labels).__name__}'
        )
    if gt_labels.dtype.is_floating_point or gt_labels.dtype == torch.bool:
        raise TypeError(
            f'{loss_name}: gt_labels must hold class indices '
            f'(integer dtype), got {gt_labels.dtype}'
        )
    if tuple(gt_labels.shape) != (num_samples,):
        raise ValueError(
            f'{loss_name}: gt_labels must have shape '
            f'({num_samples},), got {tuple(gt_labels.shape)}'
        )
    if num_samples and (gt_labels.min() < 0 or gt_labels.max() >= num_classes):
        raise ValueError(
            f'{loss_name}: gt_labels must lie in '
            f'[0, {num_classes}), got values in '
            f'[{int(gt_labels.min())}, {int(gt_labels.max())}]'
        )
    return gt_labels.long()


def pair_levels(
    loss_name: str, preds_S: TensorOrSeq, preds_T: TensorOrSeq
) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Pair student and teacher inputs level by level.

    Args:
        loss_name (str): Name of the loss, used in the message.
        preds_S (Tensor | Sequence[Tensor]): Student input(s).
        preds_T (Tensor | Sequence[Tensor]): Teacher input(s).

    Returns:
        list[tuple[Tensor, Tensor]]: ``(student, detached teacher)`` pairs.
    """
    s_is_seq = isinstance(preds_S, (list, tuple))
    t_is_seq = isinstance(preds_T, (list, tuple))
    if s_is_seq != t_is_seq:
        raise ValueError(
            f'{loss_name}: student and teacher inputs must both be tensors '
            f'or both be sequences, got {type(preds_S).__name__} and '
            f'{type(preds_T).__name__}'
        )
    if not s_is_seq:
        preds_S, preds_T = (preds_S,), (preds_T,)
    if len(preds_S) != len(preds_T) or len(preds_S) == 0:
        raise ValueError(
            f'{loss_name}: got {len(preds_S)} student and '
            f'{len(preds_T)} teacher levels; they must be equal '
            f'and non-zero'
        )
    for pred_S, pred_T in zip(preds_S, preds_T):
        for role, tensor in (('student', pred_S), ('teacher', pred_T)):
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f'{loss_name}: the {role} input must be a '
                    f'Tensor, got {type(tensor).__name__}'
                )
    return [(s, t.detach()) for s, t in zip(preds_S, preds_T)]


def reduce_elementwise(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce an element-wise loss whose first dimension is the batch.

    Args:
        loss (Tensor): Element-wise loss, shape (N, ...).
        reduction (str): ``'batchmean'`` (sum / N), ``'sum'``, ``'mean'``
            (over all elements) or ``'none'``.

    Returns:
        Tensor: The reduced loss.
    """
    if reduction == 'batchmean':
        return loss.sum() / loss.shape[0]
    if reduction == 'sum':
        return loss.sum()
    if reduction == 'mean':
        return loss.mean()
    return loss


def kl_div_from_log_probs(
    log_probs_S: torch.Tensor, probs_T: torch.Tensor
) -> torch.Tensor:
    """Element-wise ``q * (log q - log p)`` with ``0 * log 0 = 0``.

    Args:
        log_probs_S (Tensor): Student log-probabilities ``log p``.
        probs_T (Tensor): Teacher probabilities ``q``.

    Returns:
        Tensor: Element-wise KL terms (same shape as the inputs).
    """
    return torch.xlogy(probs_T, probs_T) - probs_T * log_probs_S


def soft_kl_divergence(
    logits_S: torch.Tensor,
    logits_T: torch.Tensor,
    tau: float,
    reduction: str = 'batchmean',
    target_eps: float = 0.0,
) -> torch.Tensor:
    """``tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau))`` over dim 1.

    Args:
        logits_S (Tensor): Student logits, shape (N, C, ...).
        logits_T (Tensor): Teacher logits, same shape (used detached).
        tau (float): Temperature.
        reduction (str): See :func:`reduce_elementwise`.
        target_eps (float): Constant added to the teacher probabilities
            (inside the log too), as the ONE/FFL code does with 1e-7.
            Defaults to 0.

    Returns:
        Tensor: The KL divergence scaled by ``tau^2``.
    """
    log_probs_S = F.log_softmax(logits_S / tau, dim=1)
    probs_T = F.softmax(logits_T.detach() / tau, dim=1) + target_eps
    loss = kl_div_from_log_probs(log_probs_S, probs_T) * tau**2
    return reduce_elementwise(loss, reduction)


class DistillLoss(nn.Module, metaclass=ABCMeta):
    """Base class of the distillation losses (see the module docstring).

    Subclasses implement :meth:`loss_single` for one student/teacher pair;
    :meth:`forward` handles multi-level inputs, detaches the teacher and
    applies ``loss_weight``.

    Args:
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    #: True when the loss does not change under a per-channel affine map of
    #: the student feature (it standardises each channel itself): the
    #: automatic adapter then leaves out its BatchNorm, which could not
    #: change the loss or its gradient.
    channel_affine_invariant = False

    #: True when the loss compares class distributions of logits (softmax
    #: over the class dimension): automatic adapters may only resize
    #: (N, C, H, W) logits, and a class-count or tensor-kind mismatch between
    #: student and teacher is an error at build time.
    compares_class_distributions = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = check_positive('loss_weight', loss_weight, allow_zero=True)
        self._warned_empty_batch = False

    @property
    def loss_name(self) -> str:
        """str: Class name, used in error messages."""
        return type(self).__name__

    def forward(
        self, preds_S: TensorOrSeq, preds_T: TensorOrSeq, **kwargs
    ) -> torch.Tensor:
        """Compute the weighted loss, summed over levels.

        Args:
            preds_S (Tensor | Sequence[Tensor]): Student input(s).
            preds_T (Tensor | Sequence[Tensor]): Teacher input(s).
            **kwargs: Extra inputs of the loss (e.g. ``gt_labels``).

        Returns:
            Tensor: The scalar loss multiplied by ``loss_weight``.
        """
        pairs = pair_levels(self.loss_name, preds_S, preds_T)
        total = sum(
            self.level_loss(pred_S, pred_T, **kwargs) for pred_S, pred_T in pairs
        )
        return self.loss_weight * total

    def level_loss(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """:meth:`loss_single`, or the empty-batch zero.

        An empty batch (student and teacher both with first dimension 0, e.g.
        a batch or an instance set that holds nothing) has no sample to average
        over: its loss is ``0 * pred_S.sum()`` plus ``0 *`` the sum of the
        loss's own parameters, i.e. exactly 0 with zero gradients to the
        student and to those parameters. A warning names the shapes the first
        time it happens for this loss.

        Args:
            pred_S (Tensor): Student input of one level.
            pred_T (Tensor): Teacher input of one level (detached).
            **kwargs: Extra inputs of :meth:`loss_single`.

        Returns:
            Tensor: The unweighted loss of this level.

        Raises:
            ValueError: Only one of student and teacher is empty.
        """
        empty_S = pred_S.dim() > 0 and pred_S.shape[0] == 0
        empty_T = pred_T.dim() > 0 and pred_T.shape[0] == 0
        if not (empty_S or empty_T):
            return self.loss_single(pred_S, pred_T, **kwargs)
        if empty_S != empty_T:
            raise ValueError(
                f'{self.loss_name}: the {"student" if empty_S else "teacher"} '
                f'batch is empty but the other is not (student shape '
                f'{tuple(pred_S.shape)}, teacher shape {tuple(pred_T.shape)}); '
                'both must come from the same batch'
            )
        if not self._warned_empty_batch:
            self._warned_empty_batch = True
            warnings.warn(
                f'{self.loss_name}: empty batch (student shape '
                f'{tuple(pred_S.shape)}, teacher shape {tuple(pred_T.shape)}): '
                'the loss is 0 with zero gradients for it. Expected only when '
                'a batch can hold no sample or instance; otherwise check the '
                'dataloader and the recorded modules. (Warned once per loss.)',
                stacklevel=2,
            )
        zero = pred_S.sum() * 0
        for param in self.parameters():
            zero = zero + param.sum() * 0
        return zero

    @abstractmethod
    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Unweighted loss of one student/teacher pair (teacher detached)."""
