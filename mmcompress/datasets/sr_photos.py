"""Super-resolution pairs from real photographs: the scikit-image photos that
install with the project (or any folder of HR images, e.g. DIV2K), converted to
the Y channel, degraded by bicubic downsampling."""

import glob
import os.path as osp
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

from mmcompress.registry import DATASETS

from .scenes.sources import load_background

#: Default photo split: patches of the first are trained on, the second are
#: the held-out test images (``docs/models/pisr.md``).
TRAIN_PHOTOS = (
    'astronaut',
    'coffee',
    'rocket',
    'immunohistochemistry',
    'brick',
    'grass',
    'gravel',
    'cell',
)
TEST_PHOTOS = ('chelsea', 'camera', 'coins')
SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB ``uint8`` image, as 8-bit values in [16, 235]
    (MATLAB's ``rgb2ycbcr``, the SR benchmarks' convention).

    Args:
        image (np.ndarray): (H, W, 3) RGB uint8.

    Returns:
        np.ndarray: (H, W) float32 in [0, 1] on the 8-bit grid.
    """
    rgb = image.astype(np.float64) / 255
    y = 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    return (np.round(y) / 255).astype(np.float32)


def bicubic_downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downsampling, rounded to 8 bits.

    Args:
        hr (Tensor): (C, H, W) in [0, 1], H and W multiples of ``scale``.
        scale (int): Factor.

    Returns:
        Tensor: (C, H / scale, W / scale).
    """
    lr = F.interpolate(
        hr[None], scale_factor=1 / scale, mode='bicubic', antialias=True
    )[0]
    return (lr.clamp(0, 1) * 255).round() / 255


@DATASETS.register_module()
class SRPhotoDataset(Dataset):
    """LR/HR pairs on the Y channel.

    Each HR image is cropped to a multiple of ``scale`` and its LR image is
    made once by :func:`bicubic_downsample`. Training (``patch_size`` set):
    item ``i`` is a random HR patch of ``patch_size`` pixels (LR patch
    ``patch_size / scale``) from image ``i % len(images)``, with random flips
    and 90-degree rotations (numpy's global RNG, seeded by mmengine). Test
    (``patch_size=None``): whole images.

    Args:
        scale (int): Downsampling factor. Defaults to 2.
        photos (Sequence[str], optional): Bundled scikit-image photos
            (:data:`mmcompress.datasets.scenes.sources.BACKGROUND_PHOTOS`).
            Defaults to :data:`TRAIN_PHOTOS` when training, else
            :data:`TEST_PHOTOS`.
        img_dir (str, optional): A folder of HR images instead of the photos
            (e.g. ``data/DIV2K/DIV2K_train_HR``).
        patch_size (int, optional): HR patch size for training; None for
            whole images. Defaults to None.
        num_samples (int): Length of a training epoch. Defaults to 1000.
        augment (bool): Random flips and rotations in training. Defaults to
            True.
    """

    def __init__(
        self,
        scale: int = 2,
        photos: Optional[Sequence[str]] = None,
        img_dir: Optional[str] = None,
        patch_size: Optional[int] = None,
        num_samples: int = 1000,
        augment: bool = True,
    ) -> None:
        from mmcompress.models.sr.data import check_scale

        self.scale = check_scale(scale, 'SRPhotoDataset')
        if patch_size is not None and (patch_size <= 0 or patch_size % scale):
            raise ValueError(
                f'SRPhotoDataset: patch_size must be a positive multiple of the '
                f'scale {scale}, got {patch_size}'
            )
        self.patch_size = patch_size
        self.num_samples = num_samples
        self.augment = augment
        names, images = self._load(photos, img_dir, patch_size is not None)
        self.names = names
        self.hr, self.lr = [], []
        for name, image in zip(names, images):
            h, w = (size - size % scale for size in image.shape)
            if patch_size is not None and min(h, w) < patch_size:
                raise ValueError(
                    f'SRPhotoDataset: image {name!r} ({h}x{w}) is smaller than '
                    f'patch_size {patch_size}; use a smaller patch or drop it'
                )
            hr = torch.from_numpy(np.ascontiguousarray(image[:h, :w]))[None]
            self.hr.append(hr)
            self.lr.append(bicubic_downsample(hr, scale))

    @staticmethod
    def _load(photos, img_dir, training):
        if img_dir is not None:
            paths = sorted(
                p
                for p in glob.glob(osp.join(img_dir, '*'))
                if p.lower().endswith(SUFFIXES)
            )
            if not paths:
                raise FileNotFoundError(
                    f'SRPhotoDataset: no {SUFFIXES} images in {img_dir!r}'
                )
            images = [
                rgb_to_y(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)) for p in paths
            ]
            return [osp.basename(p) for p in paths], images
        names = list(photos or (TRAIN_PHOTOS if training else TEST_PHOTOS))
        return names, [rgb_to_y(load_background(n)) for n in names]

    def __len__(self) -> int:
        return self.num_samples if self.patch_size else len(self.hr)

    def __getitem__(self, index: int) -> dict:
        """Returns: ``dict(inputs=LR (1, h, w), data_samples=...)`` whose data
        sample holds ``gt_img`` (1, H, W) and the image name and scale."""
        if not 0 <= index < len(self):
            raise IndexError(f'SRPhotoDataset index {index} out of range {len(self)}')
        k = index % len(self.hr)
        hr, lr = self.hr[k], self.lr[k]
        if self.patch_size:
            hr, lr = self._random_patch(hr, lr)
        sample = BaseDataElement(
            gt_img=hr.clone(), metainfo=dict(img_name=self.names[k], scale=self.scale)
        )
        return dict(inputs=lr.clone(), data_samples=sample)

    def _random_patch(self, hr: torch.Tensor, lr: torch.Tensor):
        """Aligned random HR/LR patches with optional flips and rotations."""
        lr_size = self.patch_size // self.scale
        y = np.random.randint(0, lr.shape[1] - lr_size + 1)
        x = np.random.randint(0, lr.shape[2] - lr_size + 1)
        lr = lr[:, y : y + lr_size, x : x + lr_size]
        s = self.scale
        hr = hr[:, y * s : (y + lr_size) * s, x * s : (x + lr_size) * s]
        if self.augment:
            if np.random.rand() < 0.5:
                hr, lr = hr.flip(-1), lr.flip(-1)
            if np.random.rand() < 0.5:
                hr, lr = hr.flip(-2), lr.flip(-2)
            if np.random.rand() < 0.5:
                hr, lr = hr.transpose(-1, -2), lr.transpose(-1, -2)
        return hr, lr
