"""Distillation losses (pure PyTorch, registered in ``mmcompress.registry``).

See :mod:`mmcompress.distill.losses.base` for the interface they share.
"""

from .base import DistillLoss
from .bckd import BCKDClassificationLoss, BCKDLocalizationLoss, DenseSoftmaxKDLoss
from .dense import ChannelWiseDivergenceLoss
from .feature import ATLoss, FeatureMSELoss, ICKDLoss, PKDLoss
from .logits import DecoupledKDLoss, DISTLoss, VanillaKDLoss
from .mgd import MGDLoss
from .pose import DWPoseKDLoss
from .variational import FeatureL1Loss, VIDLoss

__all__ = [
    'DistillLoss',
    'VanillaKDLoss',
    'DecoupledKDLoss',
    'DISTLoss',
    'FeatureMSELoss',
    'ATLoss',
    'PKDLoss',
    'MGDLoss',
    'ICKDLoss',
    'ChannelWiseDivergenceLoss',
    'BCKDClassificationLoss',
    'BCKDLocalizationLoss',
    'DenseSoftmaxKDLoss',
    'DWPoseKDLoss',
    'FeatureL1Loss',
    'VIDLoss',
]
