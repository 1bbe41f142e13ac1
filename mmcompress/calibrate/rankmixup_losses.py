"""RankMixup ranking losses (Noh et al., ICCV 2023) and input mixing.

Both losses take the logits of the raw batch ``(B, K)``, the logits of ``M``
mixed copies concatenated copy after copy ``(M * B, K)`` (row ``m * B + i`` is
copy ``m`` mixed *from* raw sample ``i``, i.e. ``lam_m * x_i +
(1 - lam_m) * x_perm_m(i)``) and the mixed soft targets ``(M * B, K)``.
"""

from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

#: A mixed target entry at least this large marks a pair of the same class.
SAME_CLASS_THRESHOLD = 1.0 - 1e-6


def mix_inputs(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    num_mixup: int,
    alpha: float,
    generator: torch.Generator = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build ``num_mixup`` mixed copies of a batch (input-level mixup).

    Each copy ``m`` draws one ``lam_m ~ Beta(alpha, alpha)`` and one random
    permutation ``perm_m``: ``x = lam_m * x_i + (1 - lam_m) * x_perm_m(i)``,
    ``y = lam_m * onehot(y_i) + (1 - lam_m) * onehot(y_perm_m(i))``.

    Args:
        inputs (torch.Tensor): Raw inputs, shape ``(B, ...)``.
        labels (torch.Tensor): Integer labels, shape ``(B,)``.
        num_classes (int): Number of classes for the one-hot targets.
        num_mixup (int): Number of mixed copies M (>= 1).
        alpha (float): Beta distribution parameter (> 0).
        generator (torch.Generator, optional): Random generator for the
            permutations (the Beta draws use the global torch RNG).

    Returns:
        tuple: Mixed inputs ``(M * B, ...)``, mixed targets ``(M * B, K)`` and
        the mixing coefficients ``(M,)``.
    """
    if num_mixup < 1:
        raise ValueError(f'num_mixup must be >= 1, got {num_mixup}')
    check_number('mixup alpha', alpha, low=0, low_open=True)
    batch_size = inputs.shape[0]
    onehot = F.one_hot(labels.long(), num_classes).to(inputs.dtype)
    lams = torch.distributions.Beta(alpha, alpha).sample((num_mixup,))
    mixed_inputs, mixed_targets = [], []
    for lam in lams.tolist():
        perm = torch.randperm(batch_size, generator=generator).to(inputs.device)
        mixed_inputs.append(lam * inputs + (1 - lam) * inputs[perm])
        mixed_targets.append(lam * onehot + (1 - lam) * onehot[perm])
    return torch.cat(mixed_inputs), torch.cat(mixed_targets), lams


def _check_shapes(
    raw_logits: torch.Tensor, mixed_logits: torch.Tensor, mixed_targets: torch.Tensor
) -> int:
    """Validate shapes and return the number of mixed copies M."""
    if raw_logits.dim() != 2 or mixed_logits.dim() != 2:
        raise ValueError(
            'raw and mixed logits must be 2-D (N, K), got '
            f'{tuple(raw_logits.shape)} and '
            f'{tuple(mixed_logits.shape)}'
        )
    batch_size = raw_logits.shape[0]
    if batch_size == 0 or mixed_logits.shape[0] % batch_size:
        raise ValueError(
            f'mixed logits ({mixed_logits.shape[0]} rows) must hold M whole '
            f'copies of the raw batch ({batch_size} rows)'
        )
    if mixed_targets.shape != mixed_logits.shape:
        raise ValueError(
            f'mixed targets {tuple(mixed_targets.shape)} must '
            f'match mixed logits {tuple(mixed_logits.shape)}'
        )
    return mixed_logits.shape[0] // batch_size


@MODELS.register_module()
class MixupMarginRankingLoss(nn.Module):
    """RankMixup MRL: a mixed sample's top logit must stay ``margin`` below
    the top logit of its raw sample.

    ``diff_j = max_c z_mix[j] - max_c z_raw[j mod B]``, ``mask_j = 1`` unless
    both mixed samples have the same class, and (per pair)
    ``loss = mean_j mask_j * relu(diff_j + margin)``.

    The official code multiplies a ``(N,)`` mask with a ``(N, 1)`` hinge, which
    broadcasts to ``(N, N)`` and gives ``mean(mask) * mean(relu(diff +
    margin))``: the mask is a global scale, not a per-pair selection.
    ``faithful_broadcast=True`` (the default, as in the paper's code and
    numbers) reproduces that; ``False`` gives the per-pair loss above.

    Args:
        margin (float): Margin on the logits. Defaults to 2.0 (CIFAR).
        loss_weight (float): Weight ``alpha`` of the loss. Defaults to 0.1.
        faithful_broadcast (bool): Reproduce the official broadcasting.
            Defaults to True.
    """

    def __init__(
        self,
        margin: float = 2.0,
        loss_weight: float = 0.1,
        faithful_broadcast: bool = True,
    ) -> None:
        super().__init__()
        self.margin = check_number('margin', margin)
        self.loss_weight = check_number('loss_weight', loss_weight, low=0)
        self.faithful_broadcast = faithful_broadcast

    def forward(
        self,
        raw_logits: torch.Tensor,
        mixed_logits: torch.Tensor,
        mixed_targets: torch.Tensor,
    ) -> torch.Tensor:
        """Compute the weighted MRL.

        Args:
            raw_logits (torch.Tensor): ``(B, K)``.
            mixed_logits (torch.Tensor): ``(M * B, K)``.
            mixed_targets (torch.Tensor): ``(M * B, K)`` soft targets.

        Returns:
            torch.Tensor: Scalar loss.
        """
        num_mixup = _check_shapes(raw_logits, mixed_logits, mixed_targets)
        raw_top = raw_logits.max(dim=1).values.repeat(num_mixup)
        diff = mixed_logits.max(dim=1).values - raw_top
        mask = (mixed_targets < SAME_CLASS_THRESHOLD).all(dim=1).to(diff)
        hinge = F.relu(diff + self.margin)
        if self.faithful_broadcast:
            loss = (mask * hinge.unsqueeze(1)).mean()
        else:
            loss = (mask * hinge).mean()
        return self.loss_weight * loss


@MODELS.register_module()
class MixupNDCGLoss(nn.Module):
    """RankMixup M-NDCG: rank confidences of the raw and M mixed samples like
    their mixing coefficients.

    For raw sample ``i``: relevances ``rel = [1, max_c y_mix^1, ...]`` and
    confidences ``conf = [max softmax(z_raw), max softmax(z_mix^1), ...]``;
    both are ordered by decreasing relevance (stable, so the raw sample comes
    first), ``DCG = sum_j conf_(j) / log2(j + 1)``, ``IDCG = sum_j rel_(j) /
    log2(j + 1)``, ``nDCG = min(DCG / IDCG, IDCG / DCG)`` and the loss is
    ``mean_i (1 - nDCG_i)``.

    Args:
        loss_weight (float): Weight ``alpha`` of the loss. Defaults to 0.1.
    """

    def __init__(self, loss_weight: float = 0.1) -> None:
        super().__init__()
        self.loss_weight = check_number('loss_weight', loss_weight, low=0)

    def forward(
        self,
        raw_logits: torch.Tensor,
        mixed_logits: torch.Tensor,
        mixed_targets: torch.Tensor,
    ) -> torch.Tensor:
        """Compute the weighted M-NDCG loss (same arguments as MRL)."""
        num_mixup = _check_shapes(raw_logits, mixed_logits, mixed_targets)
        batch_size = raw_logits.shape[0]
        raw_conf = raw_logits.softmax(dim=1).max(dim=1).values
        mixed_conf = mixed_logits.softmax(dim=1).max(dim=1).values
        mixed_rel = mixed_targets.max(dim=1).values
        # (B, 1 + M): column 0 the raw sample, column m the copy m
        conf = torch.cat(
            [raw_conf[:, None], mixed_conf.view(num_mixup, batch_size).t()], dim=1
        )
        rel = torch.cat(
            [
                torch.ones_like(raw_conf)[:, None],
                mixed_rel.view(num_mixup, batch_size).t().to(raw_conf),
            ],
            dim=1,
        )
        rel, order = rel.sort(dim=1, descending=True, stable=True)
        conf = conf.gather(1, order)
        discount = 1.0 / torch.log2(
            torch.arange(2, num_mixup + 3, dtype=conf.dtype, device=conf.device)
        )
        dcg = (conf * discount).sum(dim=1)
        idcg = (rel * discount).sum(dim=1)
        ndcg = torch.minimum(dcg / idcg, idcg / dcg)
        return self.loss_weight * (1 - ndcg).mean()
