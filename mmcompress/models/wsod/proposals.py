"""Proposals and image-level labels for weakly supervised detection.

No selective-search package is part of the project's stack and nothing can be
downloaded at run time, so :class:`WSODProposals` computes the proposals of an
image in the data pipeline, deterministically, from two sources:

* a multi-scale sliding window: square side ``s`` for every ``s`` in
  ``sizes``, each reshaped to the aspect ratios ``ratios`` (area kept), laid on
  a grid of stride ``stride_frac * side`` per axis that spans the image
  symmetrically and clipped to it;
* (``segment_scales``) the boxes of the regions of scikit-image's Felzenszwalb
  graph segmentation at each given ``scale`` (a selective-search-like,
  content-dependent source; selective search starts from the same
  segmentation), regions smaller than ``min_segment`` pixels left out.

Duplicates (same rounded box) are removed. The same image gives the same
proposals, so nothing needs to be stored per image.

:class:`ImageLevelLabels` turns box annotations into image-level labels (the
classes present) and drops the boxes, so a weakly supervised model never sees
them in training.
"""

from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from mmcompress.registry import TRANSFORMS
from mmcompress.utils.checks import check_number


def sliding_window_proposals(
    height: int,
    width: int,
    sizes: Sequence[float],
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    stride_frac: float = 0.5,
) -> np.ndarray:
    """Multi-scale sliding windows clipped to the image.

    Args:
        height (int): Image height.
        width (int): Image width.
        sizes (Sequence[float]): Square sides (pixels); a window of ratio
            ``r`` (height / width) has width ``s / sqrt(r)`` and height
            ``s * sqrt(r)``.
        ratios (Sequence[float]): Aspect ratios. Defaults to (0.5, 1, 2).
        stride_frac (float): Grid stride as a fraction of the window side.
            Defaults to 0.5.

    Returns:
        np.ndarray: (N, 4) float32 ``x1, y1, x2, y2`` boxes.
    """
    boxes = []
    for size in sizes:
        for ratio in ratios:
            box_w = min(size / np.sqrt(ratio), width)
            box_h = min(size * np.sqrt(ratio), height)
            xs = _grid(width, box_w, stride_frac)
            ys = _grid(height, box_h, stride_frac)
            x1, y1 = np.meshgrid(xs, ys)
            boxes.append(
                np.stack(
                    [x1.ravel(), y1.ravel(), x1.ravel() + box_w, y1.ravel() + box_h],
                    1,
                )
            )
    return np.concatenate(boxes).astype(np.float32)


def _grid(extent: float, side: float, stride_frac: float) -> np.ndarray:
    """Left edges of windows of ``side`` spanning ``extent`` symmetrically."""
    steps = int(np.ceil((extent - side) / (side * stride_frac) - 1e-6))
    return np.linspace(0, extent - side, max(steps, 0) + 1)


def segment_proposals(
    img: np.ndarray, scales: Sequence[float], min_size: int = 20
) -> np.ndarray:
    """Boxes of Felzenszwalb segments at several scales.

    Args:
        img (np.ndarray): (H, W, 3) image.
        scales (Sequence[float]): ``scale`` values of
            ``skimage.segmentation.felzenszwalb`` (sigma 0.8, ``min_size``).
        min_size (int): Least segment size in pixels. Defaults to 20.

    Returns:
        np.ndarray: (N, 4) float32 ``x1, y1, x2, y2`` boxes (exclusive right
        and bottom edges).
    """
    from skimage.segmentation import felzenszwalb

    boxes = []
    for scale in scales:
        segments = felzenszwalb(img, scale=scale, sigma=0.8, min_size=min_size)
        for label in np.unique(segments):
            ys, xs = np.nonzero(segments == label)
            if ys.size >= min_size:
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.asarray(boxes, np.float32).reshape(-1, 4)


@TRANSFORMS.register_module()
class WSODProposals(BaseTransform):
    """Add deterministic proposals of the (resized) image to the results.

    Writes ``proposals`` (N, 4) and ``proposals_scores`` (ones), which mmdet's
    ``PackDetInputs`` packs into ``data_sample.proposals``. Put it after
    ``Resize`` and ``RandomFlip`` (the boxes are computed on the final image).

    Args:
        sizes (Sequence[float]): Sliding-window sides in pixels. Defaults to
            (28, 40, 56, 80).
        ratios (Sequence[float]): Window aspect ratios. Defaults to
            (0.5, 1, 2).
        stride_frac (float): Window stride / side. Defaults to 0.5.
        segment_scales (Sequence[float]): Felzenszwalb scales whose segment
            boxes are added; empty for sliding windows only. Defaults to
            (300,).
        min_segment (int): Least segment size. Defaults to 20.
    """

    def __init__(
        self,
        sizes: Sequence[float] = (28, 40, 56, 80),
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        stride_frac: float = 0.5,
        segment_scales: Sequence[float] = (300,),
        min_segment: int = 20,
    ) -> None:
        self.sizes = [check_number('sizes', s, low=1) for s in sizes]
        self.ratios = [check_number('ratios', r, low=0.01) for r in ratios]
        self.stride_frac = check_number('stride_frac', stride_frac, low=0.01)
        self.segment_scales = list(segment_scales)
        self.min_segment = int(min_segment)

    def transform(self, results: dict) -> dict:
        """Add ``proposals`` and ``proposals_scores``."""
        img = results['img']
        height, width = img.shape[:2]
        boxes = [
            sliding_window_proposals(
                height, width, self.sizes, self.ratios, self.stride_frac
            )
        ]
        if self.segment_scales:
            boxes.append(segment_proposals(img, self.segment_scales, self.min_segment))
        boxes = np.unique(np.round(np.concatenate(boxes), 1), axis=0)
        results['proposals'] = boxes.astype(np.float32)
        results['proposals_scores'] = np.ones(len(boxes), np.float32)
        return results


@TRANSFORMS.register_module()
class ImageLevelLabels(BaseTransform):
    """Keep only the image-level labels of a box-annotated sample.

    ``gt_bboxes_labels`` becomes the sorted classes present in the image;
    ``gt_bboxes``, ``gt_ignore_flags``, ``gt_masks`` and ``gt_seg_map`` are
    removed. Put it right after ``LoadAnnotations`` in the training pipeline of
    a weakly supervised detector.
    """

    DROPPED = ('gt_bboxes', 'gt_ignore_flags', 'gt_masks', 'gt_seg_map')

    def transform(self, results: dict) -> dict:
        """Replace the box labels by the image-level labels."""
        if 'gt_bboxes_labels' not in results:
            raise KeyError(
                'ImageLevelLabels needs gt_bboxes_labels: put it after '
                "dict(type='LoadAnnotations', with_bbox=True)"
            )
        labels = np.asarray(results['gt_bboxes_labels'], np.int64)
        if 'gt_ignore_flags' in results:
            labels = labels[~np.asarray(results['gt_ignore_flags'], bool)]
        results['gt_bboxes_labels'] = np.unique(labels)
        for key in self.DROPPED:
            results.pop(key, None)
        return results
