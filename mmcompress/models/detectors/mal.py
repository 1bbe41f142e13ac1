"""MAL: Multiple Anchor Learning (Ke et al., CVPR 2020) as the official
release implements it: FreeAnchor anchor bags (mmdet's
``FreeAnchorRetinaHead``) plus feature depression ("inverted attention") of
the FPN maps during training, with a ratio schedule driven by
:class:`MALScheduleHook`. The paper's explicit anchor selection (a top-k of
each anchor bag that shrinks over training) is available as
:class:`MALFreeAnchorHead` with ``selection='topk'``.

Needs mmdet (imported by ``mmcompress.models`` only when mmdet is installed).
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.dense_heads import FreeAnchorRetinaHead
from mmdet.models.detectors import RetinaNet
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmcompress.registry import HOOKS, MODELS

# IA_TYPE 5 of the official code: a reflected step over 12 equal parts of the
# training run.
REFLECTED_STEP_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)


def _check_ratio(ratio: float, name: str = 'depression ratio') -> float:
    if (
        isinstance(ratio, bool)
        or not isinstance(ratio, (int, float))
        or not 0 <= ratio < 1
    ):
        raise ValueError(f'{name} must be a number in [0, 1), got {ratio!r}')
    return float(ratio)


def depression_mask(feature: Tensor, ratio: float) -> Tensor:
    """Mask of the positions a MAL feature depression keeps (1) or
    depresses (0).

    A class-activation-like map is computed from the (detached) feature,
    ``cam = sum_c F_c * mean_hw(F_c)``, and the ``int(H * W * ratio)``
    positions of highest ``cam`` per image are depressed (positions whose
    ``cam`` is strictly above the value at that rank in the descending order,
    as the official code does).

    Args:
        feature (Tensor): FPN feature (N, C, H, W).
        ratio (float): Fraction of positions to depress, in [0, 1).

    Returns:
        Tensor: (N, 1, H, W) mask of 0 (depressed) and 1, without gradient.
    """
    ratio = _check_ratio(ratio)
    if feature.ndim != 4:
        raise ValueError(
            f'depression_mask needs an N x C x H x W feature, '
            f'got shape {tuple(feature.shape)}'
        )
    feature = feature.detach()
    num, _, height, width = feature.shape
    channel_weights = feature.mean(dim=(2, 3), keepdim=True)
    cam = (feature * channel_weights).sum(dim=1).flatten(1)
    rank = int(height * width * ratio)
    threshold = cam.sort(dim=1, descending=True)[0][:, rank : rank + 1]
    keep = (cam <= threshold).to(feature.dtype)
    return keep.view(num, 1, height, width)


def depress_feature(
    feature: Tensor, ratio: float, depressed_scale: float = 0.25
) -> Tensor:
    """MAL feature depression (``MASK_TYPE 0``):
    ``(3 * F * mask + F) / 4``, i.e. depressed positions become ``F / 4``.

    Args:
        feature (Tensor): FPN feature (N, C, H, W).
        ratio (float): Fraction of positions to depress, in [0, 1).
        depressed_scale (float): Factor of the depressed positions.
            Defaults to 0.25 (official).

    Returns:
        Tensor: The depressed feature (gradient flows through ``feature``).
    """
    mask = depression_mask(feature, ratio)
    return feature * (depressed_scale + (1 - depressed_scale) * mask)


@MODELS.register_module()
class MALRetinaNet(RetinaNet):
    """RetinaNet-style detector whose training loss sees depressed FPN
    features (MAL's "inverted attention"); inference is unchanged.

    Use with a :class:`FreeAnchorRetinaHead` (or :class:`MALFreeAnchorHead`)
    and :class:`MALScheduleHook`, which sets :attr:`depression_ratio` every
    iteration.

    Args:
        depression_ratio (float): Fraction of positions of every FPN map that
            is depressed, in [0, 1). Defaults to 0 (set by the hook).
        depressed_scale (float): Factor of the depressed positions.
            Defaults to 0.25 (official ``(3 F mask + F) / 4``).
        **kwargs: Arguments of :class:`mmdet.models.RetinaNet`.
    """

    def __init__(
        self,
        *args,
        depression_ratio: float = 0.0,
        depressed_scale: float = 0.25,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.depression_ratio = _check_ratio(depression_ratio)
        if not 0 <= depressed_scale <= 1:
            raise ValueError(
                f'depressed_scale must be in [0, 1], got {depressed_scale!r}'
            )
        self.depressed_scale = float(depressed_scale)

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        """Head losses on the depressed FPN features."""
        feats = self.extract_feat(batch_inputs)
        if self.depression_ratio > 0:
            feats = tuple(
                depress_feature(f, self.depression_ratio, self.depressed_scale)
                for f in feats
            )
        return self.bbox_head.loss(feats, batch_data_samples)


@MODELS.register_module()
class MALFreeAnchorHead(FreeAnchorRetinaHead):
    """FreeAnchor head with the positive-bag selection of MAL.

    ``selection='mean_max'`` is FreeAnchor's Mean-max (what the official MAL
    release uses). ``selection='topk'`` is the paper's explicit selection:
    the bag probability is the mean of the ``selection_topk`` most confident
    anchors of the bag (``P_cls * P_loc``); :class:`MALScheduleHook` shrinks
    ``selection_topk`` over training.

    Args:
        selection (str): ``'mean_max'`` or ``'topk'``. Defaults to
            ``'mean_max'``.
        selection_topk (int, optional): Anchors kept by ``'topk'``
            selection. Defaults to ``pre_anchor_topk``.
        **kwargs: Arguments of :class:`FreeAnchorRetinaHead`.
    """

    def __init__(
        self,
        *args,
        selection: str = 'mean_max',
        selection_topk: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if selection not in ('mean_max', 'topk'):
            raise ValueError(
                f"selection must be 'mean_max' or 'topk', got {selection!r}"
            )
        self.selection = selection
        self.selection_topk = (
            self.pre_anchor_topk if selection_topk is None else selection_topk
        )
        if (
            not isinstance(self.selection_topk, int)
            or not 1 <= self.selection_topk <= self.pre_anchor_topk
        ):
            raise ValueError(
                f'selection_topk must be an int in [1, '
                f'pre_anchor_topk={self.pre_anchor_topk}], got '
                f'{self.selection_topk!r}'
            )

    def positive_bag_loss(
        self, matched_cls_prob: Tensor, matched_box_prob: Tensor
    ) -> Tensor:
        """Positive bag loss (num_gt,) with the configured selection."""
        if self.selection == 'mean_max':
            return super().positive_bag_loss(matched_cls_prob, matched_box_prob)
        matched_prob = matched_cls_prob * matched_box_prob
        topk = min(self.selection_topk, matched_prob.shape[1])
        bag_prob = matched_prob.topk(topk, dim=1)[0].mean(dim=1)
        return self.alpha * F.binary_cross_entropy(
            bag_prob, torch.ones_like(bag_prob), reduction='none'
        )


def reflected_step_ratio(
    iteration: int, max_iters: int, ratios: Sequence[float] = REFLECTED_STEP_RATIOS
) -> float:
    """The depression ratio at ``iteration``: training is cut into
    ``len(ratios)`` equal parts and part ``k`` uses ``ratios[k]``.

    Args:
        iteration (int): Current iteration (0-based).
        max_iters (int): Iterations of the whole run.
        ratios (Sequence[float]): Ratio per part. Defaults to the official
            reflected step 0, .1, ..., .5, .5, ..., .1, 0.

    Returns:
        float: The ratio.
    """
    if max_iters <= 0:
        raise ValueError(f'max_iters must be > 0, got {max_iters}')
    part = min(iteration * len(ratios) // max_iters, len(ratios) - 1)
    return ratios[max(part, 0)]


def linear_topk(iteration: int, max_iters: int, start: int, end: int) -> int:
    """Anchors kept per bag by the explicit selection at ``iteration``:
    linear from ``start`` (first iteration) to ``end`` (last), rounded.

    Args:
        iteration (int): Current iteration (0-based).
        max_iters (int): Iterations of the whole run.
        start (int): Top-k at the start.
        end (int): Top-k at the end.

    Returns:
        int: The top-k.
    """
    progress = min(iteration / max(max_iters - 1, 1), 1.0)
    return int(round(start + (end - start) * progress))


@HOOKS.register_module()
class MALScheduleHook(Hook):
    """Sets MAL's depression ratio (and, optionally, the explicit selection's
    top-k) before every training iteration, and logs them
    (``depression_ratio``, ``selection_topk``).

    Args:
        ratios (Sequence[float]): Depression ratio per equal part of the run
            (:func:`reflected_step_ratio`). Defaults to the official
            reflected step (``IA_TYPE 5``).
        selection_topk (tuple[int, int], optional): ``(start, end)`` of the
            explicit selection's linear top-k schedule
            (:func:`linear_topk`); needs a :class:`MALFreeAnchorHead` with
            ``selection='topk'``. None (default) leaves the head alone.
    """

    priority = 'NORMAL'

    def __init__(
        self,
        ratios: Sequence[float] = REFLECTED_STEP_RATIOS,
        selection_topk: Optional[Tuple[int, int]] = None,
    ) -> None:
        if len(ratios) == 0:
            raise ValueError('MALScheduleHook needs at least one ratio')
        self.ratios = tuple(_check_ratio(r, 'MALScheduleHook ratio') for r in ratios)
        if selection_topk is not None and (
            len(selection_topk) != 2
            or not all(isinstance(k, int) and k >= 1 for k in selection_topk)
        ):
            raise ValueError(
                f'selection_topk must be (start, end) ints >= 1, got {selection_topk!r}'
            )
        self.selection_topk = selection_topk

    @staticmethod
    def _detector(runner) -> MALRetinaNet:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not isinstance(model, MALRetinaNet):
            raise TypeError(
                f'MALScheduleHook needs a MALRetinaNet model, got '
                f'{type(model).__name__}'
            )
        return model

    def before_train_iter(
        self, runner, batch_idx: int, data_batch: Union[dict, tuple, list, None] = None
    ) -> None:
        """Update the detector (and head) for ``runner.iter``."""
        model = self._detector(runner)
        model.depression_ratio = reflected_step_ratio(
            runner.iter, runner.max_iters, self.ratios
        )
        runner.message_hub.update_scalar(
            'train/depression_ratio', model.depression_ratio
        )
        if self.selection_topk is not None:
            head = model.bbox_head
            if getattr(head, 'selection', None) != 'topk':
                raise TypeError(
                    'MALScheduleHook(selection_topk=...) needs a '
                    "MALFreeAnchorHead with selection='topk', got "
                    f'{type(head).__name__}'
                )
            start, end = self.selection_topk
            head.selection_topk = min(
                linear_topk(runner.iter, runner.max_iters, start, end),
                head.pre_anchor_topk,
            )
            runner.message_hub.update_scalar(
                'train/selection_topk', head.selection_topk
            )


__all__: List[str] = [
    'MALRetinaNet',
    'MALFreeAnchorHead',
    'MALScheduleHook',
    'depression_mask',
    'depress_feature',
    'reflected_step_ratio',
    'linear_topk',
    'REFLECTED_STEP_RATIOS',
]
