"""FSRCNN (Dong et al., ECCV 2016) as an mmengine model, with the layer names of
the PISR code (``feature_extraction``, ``shrinking``, ``mapping``, ``expanding``,
``last_layer``) so that records and teacher-decoder weights address the same
modules."""

from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .data import (
    attach_predictions,
    check_pair,
    check_scale,
    one_by_one,
    stack_targets,
)


def conv_prelu(in_channels: int, out_channels: int, kernel_size: int, stride=1):
    """``Conv2d`` (same padding) followed by a one-parameter ``PReLU``."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2
        ),
        nn.PReLU(),
    )


@MODELS.register_module()
class FSRCNN(BaseModel):
    """FSRCNN trained with the L1 loss to the HR image (as PISR's baseline).

    Layers: ``feature_extraction`` (5x5, ``in_channels -> d``), ``shrinking``
    (1x1, ``d -> s``), ``mapping`` (``m`` 3x3 ``s -> s``), ``expanding`` (1x1,
    ``s -> d``), each followed by PReLU, and ``last_layer`` (9x9 transposed
    convolution with stride ``scale``). PyTorch's default initialisation, as
    the official PISR configs.

    Args:
        scale (int): Upscaling factor, one of 2, 3, 4, 8. Defaults to 2.
        in_channels (int): Image channels (1: the Y channel). Defaults to 1.
        d (int): Feature channels. Defaults to 56.
        s (int): Shrunk channels. Defaults to 12.
        m (int): Mapping layers. Defaults to 4.
        loss_weight (float): Weight of the L1 loss. Defaults to 1.0.
        data_preprocessor (dict, optional): Defaults to
            ``SRDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 1,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        loss_weight: float = 1.0,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type='SRDataPreprocessor'),
            init_cfg=init_cfg,
        )
        self.scale = check_scale(scale, type(self).__name__)
        self.loss_weight = check_number('loss_weight', loss_weight, low=0)
        self.feature_extraction = conv_prelu(in_channels, d, 5)
        self.shrinking = conv_prelu(d, s, 1)
        self.mapping = nn.Sequential(*[conv_prelu(s, s, 3) for _ in range(m)])
        self.expanding = conv_prelu(s, d, 1)
        self.last_layer = nn.ConvTranspose2d(
            d, in_channels, 9, stride=scale, padding=4, output_padding=scale - 1
        )

    def generate(self, lr: torch.Tensor) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            lr (Tensor): Low-resolution images (N, C, h, w).

        Returns:
            Tensor: (N, C, scale * h, scale * w).
        """
        x = self.feature_extraction(lr)
        x = self.mapping(self.shrinking(x))
        return self.last_layer(self.expanding(x))

    def dry_run_data_samples(self, inputs: torch.Tensor, data_samples: List) -> None:
        """Give the data samples of ``DistillModel``'s build-time dry forward
        the bicubic-upsampled input as ``gt_img`` (a teacher with privileged
        HR input reads it; the values do not matter there).

        Args:
            inputs (Tensor): The dry-run batch (N, C, h, w).
            data_samples (list): Its data samples, changed in place.
        """
        hr = F.interpolate(inputs, scale_factor=self.scale, mode='bicubic')
        for sample, image in zip(data_samples, hr):
            sample.gt_img = image

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        """``'loss'``: ``dict(loss_l1=...)``; ``'predict'``: data samples with
        ``pred_img``; ``'tensor'``: the SR batch.

        Args:
            inputs (Tensor | list[Tensor]): LR batch (N, C, h, w), or a list
                of (C, h, w) test images of different sizes.
            data_samples (list, optional): Data samples with ``gt_img``.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
        """
        if isinstance(inputs, (list, tuple)):
            return one_by_one(self, inputs, data_samples, mode)
        owner = type(self).__name__
        sr = self.generate(inputs)
        if mode == 'tensor':
            return sr
        if mode == 'predict':
            return attach_predictions(data_samples, sr)
        if mode == 'loss':
            hr = stack_targets(data_samples, owner)
            check_pair(inputs, hr, self.scale, owner)
            return dict(loss_l1=self.loss_weight * F.l1_loss(sr, hr))
        raise ValueError(f'Invalid mode {mode!r}; valid: loss, predict, tensor.')
