"""PSNR and SSIM of super-resolved images (the usual SR protocol: 8-bit values,
a border of ``scale`` pixels cropped, computed on the given channel(s))."""

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric

from mmcompress.registry import METRICS


def to_8bit(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] float image -> float64 values rounded to {0..255}."""
    return (image.double().clamp(0, 1) * 255).round()


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images).

    Args:
        pred (Tensor): Image (C, H, W).
        target (Tensor): Image of the same shape.
        data_range (float): Peak value. Defaults to 255.

    Returns:
        float: ``10 log10(range^2 / MSE)``.
    """
    mse = (pred.double() - target.double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window (size x size), float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 255.0) -> float:
    """SSIM (Wang et al. 2004): 11x11 Gaussian window with sigma 1.5, K1 0.01,
    K2 0.03, population covariances, over the valid window positions, averaged
    over channels (as ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, use_sample_covariance=False)``).

    Args:
        pred (Tensor): Image (C, H, W), at least 11 x 11.
        target (Tensor): Image of the same shape.
        data_range (float): Peak value. Defaults to 255.

    Returns:
        float: The mean SSIM.
    """
    window = gaussian_window()[None, None]
    x = pred.double()[:, None]
    y = target.double()[:, None]

    def blur(image):
        return F.conv2d(image, window)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return value.mean().item()


@METRICS.register_module()
class SRQualityMetric(BaseMetric):
    """Mean PSNR (dB) and SSIM over the test images.

    Predictions and targets (``pred_img`` / ``gt_img``, (C, H, W) in [0, 1])
    are clamped and rounded to 8 bits, a border of ``crop_border`` pixels is
    removed, then :func:`psnr` and :func:`ssim` are computed per image.

    Args:
        crop_border (int): Pixels cropped on each side (the usual choice is
            the scale factor). Defaults to 0.
        collect_device (str): Defaults to ``'cpu'``.
        prefix (str, optional): Metric name prefix. Defaults to ``'sr'``.
    """

    default_prefix: Optional[str] = 'sr'

    def __init__(
        self,
        crop_border: int = 0,
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(crop_border, bool) or not isinstance(crop_border, int):
            raise TypeError(f'crop_border must be an int, got {crop_border!r}')
        if crop_border < 0:
            raise ValueError(f'crop_border must be >= 0, got {crop_border}')
        self.crop_border = crop_border

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Score each sample (dicts with ``pred_img`` and ``gt_img``)."""
        for sample in data_samples:
            if 'pred_img' not in sample or 'gt_img' not in sample:
                raise KeyError(
                    'SRQualityMetric needs `pred_img` and `gt_img` in each sample, '
                    f'got keys {sorted(sample)}'
                )
            pred, gt = sample['pred_img'], sample['gt_img']
            if pred.shape != gt.shape:
                raise ValueError(
                    f'SRQualityMetric: pred_img {tuple(pred.shape)} and gt_img '
                    f'{tuple(gt.shape)} must have the same shape'
                )
            b = self.crop_border
            if b:
                pred, gt = pred[..., b:-b, b:-b], gt[..., b:-b, b:-b]
            if min(gt.shape[-2:]) < 11:
                raise ValueError(
                    f'SRQualityMetric: images must be at least 11x11 after '
                    f'cropping {b} border pixels, got {tuple(gt.shape[-2:])}'
                )
            pred, gt = to_8bit(pred.cpu()), to_8bit(gt.cpu())
            self.results.append(dict(psnr=psnr(pred, gt), ssim=ssim(pred, gt)))

    def compute_metrics(self, results: List[dict]) -> dict:
        """Returns: ``dict(psnr=..., ssim=...)`` averaged over images."""
        if not results:
            raise ValueError('SRQualityMetric received no samples to score')
        return {
            key: sum(r[key] for r in results) / len(results) for key in ('psnr', 'ssim')
        }
