"""Task models and backbones that extend downstream OpenMMLab models
(``detectors``: MAL, imported only when mmdet is installed)."""
from mmcompress.utils import has_package
from .backbones import ReActBlock, ReActNet

if has_package('mmdet'):
    from . import detectors  # noqa: F401  (MAL, needs mmdet)

__all__ = ['ReActBlock', 'ReActNet']
