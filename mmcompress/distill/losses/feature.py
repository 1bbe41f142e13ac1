"""Feature distillation losses: FitNets/feature MSE, AT, PKD and ICKD (MGD: mgd.py)."""

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from mmcompress.registry import MODELS

from .base import (
    DistillLoss,
    check_choice,
    check_feature_maps,
    check_ndim,
    check_positive,
    check_same_dims,
)


@MODELS.register_module()
class FeatureMSELoss(DistillLoss):
    """FitNets hint loss / plain feature MSE.

    .. math::
        L = mean((F_S - F_T)^2)  \\quad (reduction='mean')

    With ``normalize=True`` each sample is flattened and L2-normalised
    first, and ``reduction='batchmean'`` sums the squared differences and
    divides by N: together they are mmrazor's ``L2Loss(normalize=True)``
    used in its FitNets config. The default (no normalisation, element
    mean) is the MSE of the FitNets reimplementation in mdistiller (used
    there with weight 100). The student feature is usually passed through a
    connector (1x1 conv + BN) to the teacher's shape first.

    Args:
        normalize (bool): L2-normalise each flattened sample. Defaults to
            False.
        reduction (str): ``'mean'`` (over elements) or ``'batchmean'``
            (sum / N). Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(
        self, normalize: bool = False, reduction: str = 'mean', loss_weight: float = 1.0
    ) -> None:
        super().__init__(loss_weight)
        check_choice('reduction', reduction, ('mean', 'batchmean'))
        self.normalize = bool(normalize)
        self.reduction = reduction

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: features of identical shape (N, ...)."""
        check_ndim(self.loss_name, pred_S, 'student', (2, 3, 4, 5), 'N x ... features')
        check_same_dims(
            self.loss_name, pred_S, pred_T, range(pred_S.ndim), 'every dimension'
        )
        if self.normalize:
            pred_S = F.normalize(pred_S.flatten(1), dim=1)
            pred_T = F.normalize(pred_T.flatten(1), dim=1)
        squared = (pred_S - pred_T).pow(2)
        if self.reduction == 'batchmean':
            return squared.sum() / squared.shape[0]
        return squared.mean()


@MODELS.register_module()
class ATLoss(DistillLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017).

    .. math::
        Q = normalize(mean_c(F^p).view(N, -1)), \\quad
        L = mean((Q_S - Q_T)^2)

    Only batch and spatial size must agree; channels may differ. Default
    p=2 as the original code; there the summed term is weighted by
    beta/2 = 500 (mdistiller: 1000), mmrazor uses loss_weight 1.

    Args:
        p (float): Power applied to the activations. Defaults to 2.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, p: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.p = check_positive('p', p)

    def attention_map(self, feature: torch.Tensor) -> torch.Tensor:
        """L2-normalised spatial attention (N, H*W) of an (N, C, H, W) map."""
        return F.normalize(feature.pow(self.p).mean(1).flatten(1), dim=1)

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: feature maps (N, C_S, H, W) and (N, C_T, H, W)."""
        check_feature_maps(self.loss_name, pred_S, pred_T)
        check_same_dims(
            self.loss_name, pred_S, pred_T, (0, 2, 3), 'batch and spatial size'
        )
        diff = self.attention_map(pred_S) - self.attention_map(pred_T)
        return diff.pow(2).mean()


@MODELS.register_module()
class PKDLoss(DistillLoss):
    """PKD: Pearson-correlation feature distillation (Cao et al., 2022).

    Each channel is standardised over (N, H, W):
    :math:`\\hat x = (x - \\mu_c) / (\\sigma_c + 10^{-6})` (unbiased std),
    then :math:`L = MSE(\\hat S, \\hat T) / 2`, i.e. 1 - Pearson r.
    When spatial sizes differ the student (default) or the teacher is
    bilinearly resized, as mmrazor. Channels must agree.

    The standardisation runs as one fused batch-norm kernel (no affine, no
    running statistics), three times faster forward and backward than the
    per-channel ``std`` of mmrazor: it divides by
    :math:`\\sqrt{\\sigma_c^2 + 10^{-12}}` with the unbiased
    :math:`\\sigma_c`, which equals :math:`\\sigma_c + 10^{-6}` up to a
    relative :math:`10^{-6}/\\sigma_c` (a constant channel gives 0 in both).
    Being invariant to a per-channel affine map of the student, it gets a
    plain 1x1 conv as automatic adapter (no BatchNorm).

    Args:
        resize_stu (bool): Resize the student to the teacher's size (True)
            or the teacher to the student's. Defaults to True.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0
            (mmrazor detection configs use 6-10).
    """

    eps = 1e-6
    channel_affine_invariant = True

    def __init__(self, resize_stu: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.resize_stu = bool(resize_stu)

    def standardize(self, feature: torch.Tensor) -> torch.Tensor:
        """Standardise each channel of (N, C, H, W) over N, H and W."""
        count = feature.numel() // feature.shape[1]
        if count < 2:
            raise ValueError(
                f'{self.loss_name}: a channel needs at least 2 values over '
                f'(N, H, W) for its standard deviation, got feature shape '
                f'{tuple(feature.shape)}'
            )
        # batch_norm divides by the biased std; rescale to the unbiased one
        biased = F.batch_norm(
            feature, None, None, training=True, eps=self.eps**2 * (count - 1) / count
        )
        return biased * ((count - 1) / count) ** 0.5

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: feature maps (N, C, H_S, W_S) and (N, C, H_T, W_T)."""
        check_feature_maps(self.loss_name, pred_S, pred_T)
        check_same_dims(self.loss_name, pred_S, pred_T, (0, 1), 'batch and channels')
        if pred_S.shape[2:] != pred_T.shape[2:]:
            if self.resize_stu:
                pred_S = F.interpolate(pred_S, pred_T.shape[2:], mode='bilinear')
            else:
                pred_T = F.interpolate(pred_T, pred_S.shape[2:], mode='bilinear')
        return F.mse_loss(self.standardize(pred_S), self.standardize(pred_T)) / 2


@MODELS.register_module()
class ICKDLoss(DistillLoss):
    """Inter-channel correlation KD (ICKD-C, Liu et al., ICCV 2021).

    With :math:`f \\in R^{B \\times C \\times HW}` and each row of the
    inter-channel Gram matrix L2-normalised,
    :math:`G = normalize(f f^T, dim=2)`:

    .. math::
        L = \\|G_S - G_T\\|_F^2 / (C \\cdot B)        \\quad
        (normalization='cifar')

        L = \\|G_S - G_T\\|_F^2 / (C \\cdot B^2)      \\quad
        (normalization='imagenet')

    Default ``'cifar'``: the released RepDistiller-based CIFAR-100 training
    code (used with weight 2.5 in the README, 4 in ``train_student.sh``);
    ``'imagenet'`` is the torchdistill ``ChSimLoss`` (used with weight 500).

    Grid variant for dense prediction (``grid=(m, n)``): the maps are split
    into m x n equal spatial patches, G is computed per patch and the loss is
    the mean of the per-patch losses (each normalised as above with the
    original batch size). H must be divisible by m and W by n. Student and
    teacher must agree in batch and channels (use an ``ICKD``-style 1x1
    conv + BN embed on the student otherwise); spatial sizes may differ.

    Args:
        normalization (str): ``'cifar'`` or ``'imagenet'``. Defaults to
            ``'cifar'``.
        grid (Sequence[int]): Patches (m, n) along H and W. Defaults to
            (1, 1), the image-level loss.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        normalization: str = 'cifar',
        grid: Union[int, Sequence[int]] = (1, 1),
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(loss_weight)
        check_choice('normalization', normalization, ('cifar', 'imagenet'))
        self.normalization = normalization
        if isinstance(grid, int):
            grid = (grid, grid)
        if (
            not isinstance(grid, (list, tuple))
            or len(grid) != 2
            or not all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid
            )
        ):
            raise ValueError(
                f'grid must be a positive int or a pair of '
                f'positive ints (m, n), got {grid!r}'
            )
        self.grid = tuple(grid)

    def correlation(self, feature: torch.Tensor) -> torch.Tensor:
        """Row-normalised inter-channel Gram matrices, (N*m*n, C, C)."""
        num, channels, height, width = feature.shape
        rows, cols = self.grid
        if height % rows or width % cols:
            raise ValueError(
                f'{self.loss_name}: grid {self.grid} must divide the spatial '
                f'size (H, W) = ({height}, {width}) of a map of shape '
                f'{tuple(feature.shape)}; choose a grid that divides it or '
                f'resize the features'
            )
        patches = feature.view(
            num, channels, rows, height // rows, cols, width // cols
        ).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(num * rows * cols, channels, -1)
        gram = torch.bmm(patches, patches.transpose(1, 2))
        return F.normalize(gram, dim=2)

    def loss_single(
        self, pred_S: torch.Tensor, pred_T: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """Args: feature maps (N, C, H_S, W_S) and (N, C, H_T, W_T)."""
        check_feature_maps(self.loss_name, pred_S, pred_T)
        check_same_dims(self.loss_name, pred_S, pred_T, (0, 1), 'batch and channels')
        num, channels = pred_S.shape[:2]
        squared = (self.correlation(pred_S) - self.correlation(pred_T)).pow(2).sum()
        denominator = channels * num * self.grid[0] * self.grid[1]
        if self.normalization == 'imagenet':
            denominator *= num
        return squared / denominator
