"""Super-resolution (PISR) mistakes: scale, HR/LR pairs, patches, features."""

import pytest
import torch
from mmengine.structures import BaseDataElement

from mmcompress.datasets.sr_photos import SRPhotoDataset
from mmcompress.distill.losses import VIDLoss
from mmcompress.models.sr import FSRCNN, SRDataPreprocessor


def test_sr_scale_not_supported():
    """An SR model built for a scale factor the upsampler does not support.

    Message: scale must be one of (2, 3, 4, 8)
    """
    with pytest.raises(
        ValueError, match=r'FSRCNN: scale must be one of \(2, 3, 4, 8\)'
    ):
        FSRCNN(scale=5)


def test_sr_dataset_scale_differs_from_model_scale():
    """A x4 dataset fed to a x2 model (HR/LR size mismatch).

    Message: HR/LR size mismatch: LR (1, 1, 8, 8) at scale 2 needs HR
    """
    lr = torch.rand(1, 1, 8, 8)
    sample = BaseDataElement(gt_img=torch.rand(1, 32, 32))
    with pytest.raises(
        ValueError,
        match=r'HR/LR size mismatch: LR \(1, 1, 8, 8\) at scale 2 needs HR '
        r'\(1, 1, 16, 16\), got \(1, 1, 32, 32\)',
    ):
        FSRCNN(scale=2)(lr, [sample], mode='loss')


def test_sr_image_smaller_than_patch():
    """Training patches larger than a training image.

    Message: is smaller than patch_size 400
    """
    with pytest.raises(
        ValueError, match=r"image 'coins' \(302x384\) is smaller than patch_size 400"
    ):
        SRPhotoDataset(scale=2, photos=['coins'], patch_size=400)


def test_sr_patch_not_a_multiple_of_scale():
    """A training patch size the scale factor does not divide.

    Message: patch_size must be a positive multiple of the scale 4, got 50
    """
    with pytest.raises(ValueError, match='multiple of the scale 4, got 50'):
        SRPhotoDataset(scale=4, photos=['coins'], patch_size=50)


def test_sr_training_images_of_different_sizes():
    """Training on whole images of different sizes (patch_size not set).

    Message: the LR images of a training batch differ in size
    """
    data = dict(inputs=[torch.rand(1, 8, 8), torch.rand(1, 8, 9)], data_samples=None)
    with pytest.raises(ValueError, match='training batch differ in size.*patch_size'):
        SRDataPreprocessor()(data, training=True)


def test_vid_loss_channels_differ_from_feature():
    """The variance-aware loss built for other channels than the recorded layer.

    Message: must be equal with channels=56
    """
    loss = VIDLoss(channels=56)
    with pytest.raises(
        ValueError, match=r'\(2, 12, 4, 4\).*must be equal with channels=56'
    ):
        loss(torch.rand(2, 12, 4, 4), torch.rand(2, 12, 4, 4))
