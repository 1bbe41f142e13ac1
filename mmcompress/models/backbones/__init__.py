"""Backbones registered into the OpenMMLab model registries (the PSA backbones
``psa_seg`` / ``psa_pose`` only when mmseg / mmpose are installed)."""

from mmcompress.utils import has_package

from .reactnet import ReActBlock, ReActNet

__all__ = ['ReActBlock', 'ReActNet']

if has_package('mmseg'):
    from .psa_seg import SegPSAHRNet, SegPSAResNet  # noqa: F401

    __all__ += ['SegPSAHRNet', 'SegPSAResNet']
if has_package('mmpose'):
    from .psa_pose import PosePSAHRNet, PosePSAResNet  # noqa: F401

    __all__ += ['PosePSAHRNet', 'PosePSAResNet']
