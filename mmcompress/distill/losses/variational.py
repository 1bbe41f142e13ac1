"""Variance-aware feature distillation (VID-style heteroscedastic likelihood), as
PISR (Lee et al., ECCV 2020) uses it for super-resolution students."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.registry import MODELS

from .base import DistillLoss, check_choice, check_ndim, check_positive


def _head(channels: int) -> nn.Sequential:
    """``Conv1x1 -> PReLU -> Conv1x1`` (the official adaptation layer)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 1), nn.PReLU(), nn.Conv2d(channels, channels, 1)
    )


@MODELS.register_module()
class VIDLoss(DistillLoss):
    """Negative log-likelihood of the teacher feature under a per-element
    distribution predicted from the student feature (PISR's ``vid_loss``).

    Two heads read the student feature ``x``: the mean
    ``mu = Conv1x1 -> PReLU -> Conv1x1 (x)`` and the raw scale
    ``s = Softplus(Conv1x1 -> PReLU -> Conv1x1 (x))``, one value per element
    (the official ``vid_info 'expanding:None'``). With ``C`` channels and the
    teacher feature ``t``:

    * ``pdf='laplace'`` (the paper's loss; default):
      ``b = 0.1 s + eps``,
      ``L = mean(C log(2 pi) / 2 + log(2 b) + |mu - t| / b)``;
    * ``pdf='gaussian'``: ``v = 0.001 s + eps``,
      ``L = mean(C log(2 pi) / 2 + log(v) / 2 + (mu - t)^2 / (2 v))``.

    The constant ``C log(2 pi) / 2`` is kept as in the official code (it does
    not change gradients). The stored official step-2 config does not set
    ``pdf``, so the official run uses the function default, the Gaussian; the
    paper describes the Laplace, which is the default here. PISR weights the
    term by 1e-6 next to the student's L1 loss (``loss_weight``). The heads are
    trained with the student and are not part of the plain student checkpoint.

    Args:
        channels (int): Channels of the student and teacher features.
        pdf (str): ``'laplace'`` or ``'gaussian'``. Defaults to ``'laplace'``.
        scale (float, optional): Multiplier of the Softplus output before
            ``eps`` is added. Defaults to 0.1 (Laplace) / 0.001 (Gaussian).
        eps (float): Added to the scale. Defaults to 1e-8.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    DEFAULT_SCALES = dict(laplace=0.1, gaussian=1e-3)

    def __init__(
        self,
        channels: int,
        pdf: str = 'laplace',
        scale: float = None,
        eps: float = 1e-8,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(loss_weight)
        check_choice('pdf', pdf, tuple(self.DEFAULT_SCALES))
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(
                f'VIDLoss: channels must be a positive int (the channels of the '
                f'distilled feature, 56 for FSRCNN expanding), got {channels!r}'
            )
        self.channels = channels
        self.pdf = pdf
        self.scale = check_positive(
            'scale', self.DEFAULT_SCALES[pdf] if scale is None else scale
        )
        self.eps = check_positive('eps', eps)
        self.mean_head = _head(channels)
        self.var_head = nn.Sequential(_head(channels), nn.Softplus())

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: student and teacher features (N, C, H, W) of equal shape."""
        for role, tensor in (('student', pred_S), ('teacher', pred_T)):
            check_ndim(self.loss_name, tensor, role, (4,), 'N x C x H x W')
        if pred_S.shape[1] != self.channels or pred_S.shape != pred_T.shape:
            raise ValueError(
                f'VIDLoss: student shape {tuple(pred_S.shape)} and teacher shape '
                f'{tuple(pred_T.shape)} must be equal with channels={self.channels}'
                ' (set channels to the feature channels, or record matching '
                'layers)'
            )
        mean = self.mean_head(pred_S)
        scale = self.var_head(pred_S) * self.scale + self.eps
        return self.negative_log_likelihood(mean, scale, pred_T)

    def negative_log_likelihood(
        self, mean: torch.Tensor, scale: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Mean element-wise NLL of ``target`` (official constant included).

        Args:
            mean (Tensor): Predicted mean ``mu``.
            scale (Tensor): ``b`` (Laplace) or the variance ``v`` (Gaussian),
                already scaled and with ``eps`` added.
            target (Tensor): Teacher feature.

        Returns:
            Tensor: The scalar loss.
        """
        constant = mean.shape[1] * math.log(2 * math.pi) / 2
        if self.pdf == 'laplace':
            nll = torch.log(2 * scale) + (mean - target).abs() / scale
        else:
            nll = torch.log(scale) / 2 + (mean - target).pow(2) / (2 * scale)
        return (constant + nll).mean()


@MODELS.register_module()
class FeatureL1Loss(DistillLoss):
    """Plain L1 feature distillation ``mean(|F_S - F_T|)`` (the baseline that
    shows what PISR's variance term adds).

    Args:
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: features of identical shape (N, ...)."""
        check_ndim(self.loss_name, pred_S, 'student', (2, 3, 4, 5), 'N x ... features')
        if pred_S.shape != pred_T.shape:
            raise ValueError(
                f'FeatureL1Loss: student shape {tuple(pred_S.shape)} and teacher '
                f'shape {tuple(pred_T.shape)} must be equal; add an adapter'
            )
        return F.l1_loss(pred_S, pred_T)
