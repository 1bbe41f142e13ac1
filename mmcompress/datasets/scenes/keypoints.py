"""Garment keypoints: definition, extraction from a mask, and pose metainfo.

Every garment gets the same five keypoints, computed from its own binary mask in
image coordinates (x = column index, y = row index, as mmpose flips them):

* ``top_left``: the mask pixels that minimise ``x + y`` (extreme towards the
  top-left image corner); ``top_right`` maximises ``x - y``; ``bottom_right``
  maximises ``x + y``; ``bottom_left`` maximises ``y - x``. When several pixels tie
  (they lie on one diagonal line), the keypoint is the middle one of them, so it
  is always a pixel of the mask.
* ``centre``: the centroid of the mask.

The definitions are tied to the image axes, so a horizontal flip of the image swaps
``top_left`` with ``top_right`` and ``bottom_left`` with ``bottom_right`` exactly
(the flip pairs below) and leaves ``centre`` in place.
"""

from typing import Dict

import numpy as np

GARMENT_KEYPOINT_NAMES = (
    'top_left',
    'top_right',
    'bottom_right',
    'bottom_left',
    'centre',
)

# Per-keypoint OKS sigmas. The four extreme points are located to about a pixel on
# a 30-60 px garment; the centroid depends on the whole outline, so it gets more
# tolerance. These values are the project's own choice, documented in
# docs/scenes.md.
GARMENT_KEYPOINT_SIGMAS = (0.05, 0.05, 0.05, 0.05, 0.07)

GARMENT_SKELETON = (
    ('top_left', 'top_right'),
    ('top_right', 'bottom_right'),
    ('bottom_right', 'bottom_left'),
    ('bottom_left', 'top_left'),
    ('top_left', 'centre'),
    ('top_right', 'centre'),
    ('bottom_right', 'centre'),
    ('bottom_left', 'centre'),
)

GARMENT_FLIP_PAIRS = (('top_left', 'top_right'), ('bottom_right', 'bottom_left'))

VISIBLE = 2
OCCLUDED = 1


def garment_keypoints(mask: np.ndarray) -> np.ndarray:
    """Locate the five garment keypoints on a binary mask.

    Args:
        mask (np.ndarray): Boolean array (H, W) with at least one True pixel.

    Returns:
        np.ndarray: ``float64`` array (5, 2) of (x, y) in the order of
        :data:`GARMENT_KEYPOINT_NAMES`.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError(
            'garment_keypoints needs a mask with at least one '
            'foreground pixel; got an empty mask.'
        )
    xs = xs.astype(np.float64)
    ys = ys.astype(np.float64)
    extremes = []
    for score in (-(xs + ys), xs - ys, xs + ys, ys - xs):
        tied = np.flatnonzero(score == score.max())
        middle = tied[len(tied) // 2]
        extremes.append((xs[middle], ys[middle]))
    extremes.append((xs.mean(), ys.mean()))
    return np.asarray(extremes, dtype=np.float64)


def garment_pose_metainfo() -> Dict:
    """The mmpose metainfo of the garment keypoints.

    Returns:
        dict: In the layout of mmpose's ``configs/_base_/datasets/*.py`` files
        (``dataset_name``, ``keypoint_info``, ``skeleton_info``,
        ``joint_weights``, ``sigmas``), ready for ``parse_pose_metainfo``.
    """
    swap = {}
    for first, second in GARMENT_FLIP_PAIRS:
        swap[first], swap[second] = second, first
    colors = (
        [255, 128, 0],
        [0, 128, 255],
        [0, 255, 128],
        [255, 0, 128],
        [255, 255, 255],
    )
    keypoint_info = {
        index: dict(
            name=name,
            id=index,
            color=colors[index],
            type='upper' if name.startswith('top') else 'lower',
            swap=swap.get(name, ''),
        )
        for index, name in enumerate(GARMENT_KEYPOINT_NAMES)
    }
    skeleton_info = {
        index: dict(link=link, id=index, color=[200, 200, 200])
        for index, link in enumerate(GARMENT_SKELETON)
    }
    return dict(
        dataset_name='fashion_scenes_garment',
        paper_info=dict(
            author='mmcompress',
            title='Fashion-MNIST garments composed onto scikit-image photos',
            container='mmcompress docs/scenes.md',
            year='2026',
            homepage='',
        ),
        keypoint_info=keypoint_info,
        skeleton_info=skeleton_info,
        joint_weights=[1.0] * len(GARMENT_KEYPOINT_NAMES),
        sigmas=list(GARMENT_KEYPOINT_SIGMAS),
    )
