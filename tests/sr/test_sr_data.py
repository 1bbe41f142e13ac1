"""The SR photo dataset, its Y conversion and the PSNR / SSIM metric."""

import numpy as np
import pytest
import torch

from mmcompress.datasets.sr_photos import (
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    SRPhotoDataset,
    bicubic_downsample,
    rgb_to_y,
)
from mmcompress.models.sr.metrics import SRQualityMetric, psnr, ssim


def test_y_channel_of_black_white_and_pure_colours():
    """BT.601: Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1])."""
    image = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(image)[0] * 255
    np.testing.assert_allclose(y, [16, 235, 81, 41], atol=1e-4)


def test_train_and_test_photos_are_disjoint():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)


def test_training_patches_are_aligned_crops(deterministic):
    dataset = SRPhotoDataset(scale=2, photos=['camera'], patch_size=32, augment=False)
    item = dataset[0]
    lr, hr = item['inputs'], item['data_samples'].gt_img
    assert lr.shape == (1, 16, 16) and hr.shape == (1, 32, 32)
    full_lr, full_hr = dataset.lr[0], dataset.hr[0]
    positions = [
        (y, x)
        for y in range(full_lr.shape[1] - 15)
        for x in range(full_lr.shape[2] - 15)
        if torch.equal(full_lr[:, y : y + 16, x : x + 16], lr)
    ]
    assert positions
    y, x = positions[0]
    assert torch.equal(full_hr[:, 2 * y : 2 * y + 32, 2 * x : 2 * x + 32], hr)


def test_test_images_are_whole_and_cropped_to_the_scale():
    dataset = SRPhotoDataset(scale=4, photos=['coins'])
    item = dataset[0]
    assert item['data_samples'].gt_img.shape == (1, 300, 384)  # 303 x 384 photo
    assert item['inputs'].shape == (1, 75, 96)
    assert torch.equal(item['inputs'], bicubic_downsample(dataset.hr[0], 4))
    assert item['data_samples'].img_name == 'coins'


def test_psnr_and_ssim_against_hand_value_and_skimage():
    from skimage.metrics import structural_similarity

    generator = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 256, (1, 32, 32), generator=generator).double()
    assert psnr(gt + 1, gt) == pytest.approx(20 * np.log10(255))
    noisy = (gt + torch.randn(1, 32, 32, generator=generator) * 20).clamp(0, 255)
    reference = structural_similarity(
        noisy[0].numpy(),
        gt[0].numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(noisy, gt) == pytest.approx(reference, abs=1e-9)


def test_metric_crops_the_border():
    """Errors only in the 2-pixel border: PSNR inf after cropping 2."""
    gt = torch.full((1, 20, 20), 0.5)
    pred = gt.clone()
    pred[..., :2, :] = 0
    metric = SRQualityMetric(crop_border=2)
    metric.process({}, [dict(pred_img=pred, gt_img=gt)])
    assert metric.compute_metrics(metric.results)['psnr'] == float('inf')
