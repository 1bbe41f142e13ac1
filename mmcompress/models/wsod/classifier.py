"""Multi-label image classifier on image-level labels: a backbone for OICR.

Weakly supervised detectors start from a backbone that already classifies
(OICR / CASD: ImageNet-pretrained VGG16). Where no pretrained weights are
available, :class:`WSODImageClassifier` trains the detector's backbone on the
same image-level labels the detector sees (no boxes): a linear layer gives one
logit per class from the last backbone level pooled over space (``pool``:
global average of the level, or the spatial maximum / log-sum-exp of the class
maps the layer gives at every location, as weakly supervised classifiers pool
small objects out of a mostly-background map), trained with the multi-label
binary cross entropy (summed over classes, mean over images, as the MIDN's
image loss). Its checkpoint then initialises the OICR
backbone (``load_from``; the classifier's keys other than ``backbone.*`` are
left out).
"""

from typing import List

import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS as MMDET_MODELS
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .oicr import image_level_labels
from .oicr_head import POOLS, multi_hot, spatial_pool


@MODELS.register_module()
class WSODImageClassifier(BaseDetector):
    """Spatially pooled backbone level + linear layer, multi-label BCE.

    Args:
        backbone (dict): mmdet backbone config (returns a tuple of levels).
        in_channels (int): Channels of the classified level.
        num_classes (int): Classes. Defaults to 10.
        level (int): Backbone level classified. Defaults to -1 (the last).
        pool (str): ``'avg'``: the linear layer on the level averaged over
            space; ``'max'`` / ``'lse'``: the linear layer at every location
            (class maps), then their spatial maximum / log-sum-exp
            (:func:`spatial_pool`). Defaults to ``'avg'``.
        lse_r (float): ``r`` of the log-sum-exp pooling. Defaults to 5.
        train_cfg (dict, optional): Unused (mmdet's detector signature).
        test_cfg (dict, optional): Unused (mmdet's detector signature).
        data_preprocessor (dict, optional): mmdet data preprocessor config.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        backbone: dict,
        in_channels: int,
        num_classes: int = 10,
        level: int = -1,
        pool: str = 'avg',
        lse_r: float = 5.0,
        train_cfg=None,
        test_cfg=None,
        data_preprocessor=None,
        init_cfg=None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MMDET_MODELS.build(backbone)
        self.num_classes = int(check_number('num_classes', num_classes, low=1))
        self.level = int(level)
        if pool not in POOLS:
            raise ValueError(
                f'WSODImageClassifier pool must be one of {POOLS}, got {pool!r}'
            )
        self.pool = pool
        self.lse_r = check_number('lse_r', lse_r, low=0, low_open=True)
        self.fc = nn.Linear(
            int(check_number('in_channels', in_channels, low=1)), self.num_classes
        )

    def extract_feat(self, batch_inputs: Tensor):
        """Backbone levels of a batch."""
        return tuple(self.backbone(batch_inputs))

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None) -> Tensor:
        """(N, C) class logits."""
        level = self.extract_feat(batch_inputs)[self.level]
        if self.pool == 'avg':
            return self.fc(level.mean((2, 3)))
        return spatial_pool(self.class_maps(level), self.pool, self.lse_r)

    def class_maps(self, level: Tensor) -> Tensor:
        """(N, C, H, W) class logits of the linear layer at every location."""
        weight = self.fc.weight[:, :, None, None]
        return F.conv2d(level, weight, self.fc.bias)

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        """``loss_cls``: BCE summed over classes, mean over images.

        Args:
            batch_inputs (Tensor): (N, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): With image-level
                ``gt_instances.labels`` (no boxes).

        Returns:
            dict: ``loss_cls``.
        """
        labels = image_level_labels(batch_data_samples, type(self).__name__)
        logits = self._forward(batch_inputs)
        targets = multi_hot(labels, self.num_classes, logits)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
        return dict(loss_cls=loss.sum(1).mean())

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale=True) -> List:
        """Class probabilities per image in ``pred_image_scores`` (C,).

        Args:
            batch_inputs (Tensor): (N, 3, H, W) preprocessed images.
            batch_data_samples (list[DetDataSample]): The batch's samples.
            rescale (bool): Unused (no boxes are predicted).

        Returns:
            list[DetDataSample]: With ``pred_image_scores``.
        """
        probs = self._forward(batch_inputs).sigmoid()
        for sample, prob in zip(batch_data_samples, probs):
            sample.pred_image_scores = prob
        return batch_data_samples
