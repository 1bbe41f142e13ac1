"""Task models, backbones and plugin layers that extend downstream OpenMMLab models
(``detectors``: MAL, imported only when mmdet is installed; ``plugins``: Polarized
Self-Attention; ``norms``: Unified Normalization and its folding)."""

from mmcompress.utils import has_package

from .backbones import ReActBlock, ReActNet
from .norms import UN, BNReestimationHook, TokenBN, UNIterHook, fuse_un
from .plugins import PolarizedSelfAttention
from .sr import FSRCNN, PISRTeacher
from .wsod import CASDInputWiseLoss, CASDLayerWiseLoss

if has_package('mmdet'):
    from . import detectors  # noqa: F401  (MAL, needs mmdet)

__all__ = [
    'BNReestimationHook',
    'CASDInputWiseLoss',
    'CASDLayerWiseLoss',
    'FSRCNN',
    'PISRTeacher',
    'UN',
    'PolarizedSelfAttention',
    'ReActBlock',
    'ReActNet',
    'TokenBN',
    'UNIterHook',
    'fuse_un',
]
