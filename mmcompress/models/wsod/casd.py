"""CASD (Huang et al., NeurIPS 2020): comprehensive attention self-distillation
for weakly supervised object detection.

Each training image is seen in several views (scales x {original, h-flip}). The
attention of a view is the channel mean of a feature map; the *comprehensive
attention* is the element-wise maximum of the views' attentions after aligning
them to one frame (flips undone, scales resized), detached; every view is pulled
towards it in its own frame by an MSE:

* input-wise (CASD-IW), on the pooled RoI features (R, C, 7, 7) of the same
  proposals in every view: ``A_v = sigmoid(minmax(mean_c(F_v)))`` (min-max over
  each RoI's cells, +1e-7), as the official ``_add_losses``;
* layer-wise (CASD-LW), on backbone maps (N, C, H, W) of each view:
  ``A_v = sigmoid(mean_c(F_v))`` (the official ``ca_lw`` helper), views of other
  sizes resized bilinearly to the first view's size for the maximum and the
  target resized back.

The official code has this term switched off in both stored branches (``master``:
``_rampweight`` sets ``ca_iw=False`` at every iteration <= 45k before the term is
computed and nothing sets it back; ``may30``: never added to the total loss).
These losses implement the paper's term ``lambda * (L_IW + L_LW)`` (lambda = 0.1
as the master code's weight), so they do something the released code does not.
"""

from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number


def minmax_normalize(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``(a - min) / (max - min + eps)`` over the last two dimensions.

    Args:
        maps (Tensor): (..., H, W).
        eps (float): Added to the range. Defaults to 1e-7 (official).

    Returns:
        Tensor: Same shape, in [0, 1).
    """
    flat = maps.flatten(-2)
    low = flat.min(-1, keepdim=True).values
    high = flat.max(-1, keepdim=True).values
    return ((flat - low) / (high - low + eps)).view_as(maps)


def align(maps: torch.Tensor, flipped: bool, size) -> torch.Tensor:
    """Bring (N, H, W) attention maps of a view into the reference frame (undo
    the flip, resize to ``size``); the inverse is the same two steps in the
    other order (:func:`to_view`)."""
    if flipped:
        maps = maps.flip(-1)
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size=size, mode='bilinear')[:, 0]
    return maps


def to_view(target: torch.Tensor, flipped: bool, size) -> torch.Tensor:
    """Map the reference-frame target into a view of spatial ``size``."""
    if tuple(target.shape[-2:]) != tuple(size):
        target = F.interpolate(target[:, None], size=size, mode='bilinear')[:, 0]
    return target.flip(-1) if flipped else target


def comprehensive_attention(
    maps: Sequence[torch.Tensor], flipped: Sequence[bool]
) -> torch.Tensor:
    """Element-wise maximum of the views' attention maps aligned to the image
    (flips undone, sizes of the first view), detached.

    Args:
        maps (Sequence[Tensor]): (N, H_v, W_v) attention of each view.
        flipped (Sequence[bool]): Whether each view is horizontally flipped
            relative to the image.

    Returns:
        Tensor: (N, H_0, W_0) target in the unflipped image frame, at the
        first view's size.
    """
    size = maps[0].shape[-2:]
    aligned = [align(m.detach(), f, size) for m, f in zip(maps, flipped)]
    return torch.stack(aligned).amax(0)


class _CASDLoss(nn.Module):
    """Shared part of the CASD losses (the class docstrings of the two)."""

    layout = 'R x C x h x w'

    def __init__(
        self, flipped: Optional[Sequence[bool]] = None, loss_weight: float = 0.1
    ) -> None:
        super().__init__()
        self.flipped = None if flipped is None else [bool(f) for f in flipped]
        self.loss_weight = check_number('loss_weight', loss_weight, low=0)

    def attention(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def view_flips(self, count: int) -> list:
        """Flags of ``count`` views: configured, else (no flip, flip) repeated
        (the official order s1, s1-flip, s2, s2-flip)."""
        flips = self.flipped or [i % 2 == 1 for i in range(count)]
        if len(flips) != count:
            raise ValueError(
                f'{type(self).__name__}: got {count} views but flipped has '
                f'{len(flips)} entries {flips}'
            )
        return flips

    def check_views(self, views: Sequence[torch.Tensor]) -> None:
        name = type(self).__name__
        if len(views) < 2:
            raise ValueError(f'{name} needs at least 2 views, got {len(views)}')
        for view in views:
            if not isinstance(view, torch.Tensor) or view.ndim != 4:
                raise ValueError(
                    f'{name}: every view must be a {self.layout} tensor, got '
                    f'{getattr(view, "shape", type(view).__name__)}'
                )
        counts = {v.shape[0] for v in views}
        if len(counts) > 1:
            raise ValueError(
                f'{name}: the views hold different numbers of '
                f'{"RoIs" if self.layout.startswith("R") else "images"} '
                f'{[tuple(v.shape) for v in views]}; pass the same proposals '
                '(images) in every view'
            )

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        """``loss_weight * sum_v MSE(A_v, A* in v's frame)`` (see subclasses).

        Args:
            *views (Tensor): Features of each view, same first dimension.

        Returns:
            Tensor: The scalar loss.
        """
        self.check_views(views)
        flips = self.view_flips(len(views))
        maps = [self.attention(v) for v in views]
        target = comprehensive_attention(maps, flips)
        loss = sum(
            F.mse_loss(m, to_view(target, f, m.shape[-2:])) for m, f in zip(maps, flips)
        )
        return self.loss_weight * self.reduce(loss, views)

    def reduce(self, loss: torch.Tensor, views) -> torch.Tensor:
        return loss


@MODELS.register_module()
class CASDInputWiseLoss(_CASDLoss):
    """CASD-IW on RoI features of the same proposals in every view.

    ``A_v = sigmoid(minmax(mean_c(F_v)))``; the loss is
    ``loss_weight * sum_v MSE(A_v, A*_v) / R`` with ``R`` RoIs (the official
    division by ``num_each``).

    Args:
        flipped (Sequence[bool], optional): Per view, whether it is flipped.
            Defaults to (False, True) repeated.
        divide_by_rois (bool): Divide by the number of RoIs as the official
            code. Defaults to True.
        loss_weight (float): Defaults to 0.1 (official weight).
    """

    def __init__(
        self,
        flipped: Optional[Sequence[bool]] = None,
        divide_by_rois: bool = True,
        loss_weight: float = 0.1,
    ) -> None:
        super().__init__(flipped, loss_weight)
        self.divide_by_rois = bool(divide_by_rois)

    def attention(self, feats: torch.Tensor) -> torch.Tensor:
        """(R, C, h, w) -> (R, h, w) ``sigmoid(minmax(mean_c))``."""
        return torch.sigmoid(minmax_normalize(feats.mean(1)))

    def reduce(self, loss: torch.Tensor, views) -> torch.Tensor:
        return loss / views[0].shape[0] if self.divide_by_rois else loss


@MODELS.register_module()
class CASDLayerWiseLoss(_CASDLoss):
    """CASD-LW on one backbone layer's maps of every view.

    ``A_v = sigmoid(mean_c(F_v))``; views of other sizes are resized to the
    first view's size for the maximum; loss ``loss_weight * sum_v MSE(A_v,
    A*_v)``. Sum it over layers for the paper's multi-layer term.

    Args:
        flipped (Sequence[bool], optional): Per view, whether it is flipped.
            Defaults to (False, True) repeated.
        loss_weight (float): Defaults to 0.1.
    """

    layout = 'N x C x H x W'

    def attention(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, H, W) ``sigmoid(mean_c)``."""
        return torch.sigmoid(feats.mean(1))
