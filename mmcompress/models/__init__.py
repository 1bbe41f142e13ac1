"""Task models, backbones and plugin layers that extend downstream OpenMMLab models
(``detectors``: MAL, imported only when mmdet is installed; ``plugins``: Polarized
Self-Attention)."""

from mmcompress.utils import has_package

from .backbones import ReActBlock, ReActNet
from .plugins import PolarizedSelfAttention

if has_package('mmdet'):
    from . import detectors  # noqa: F401  (MAL, needs mmdet)

__all__ = ['PolarizedSelfAttention', 'ReActBlock', 'ReActNet']
