"""Detection methods built on mmdet (imported only when mmdet is
installed): MAL."""

from .mal import (
    REFLECTED_STEP_RATIOS,
    MALFreeAnchorHead,
    MALRetinaNet,
    MALScheduleHook,
    depress_feature,
    depression_mask,
    linear_topk,
    reflected_step_ratio,
)

__all__ = [
    'MALRetinaNet',
    'MALFreeAnchorHead',
    'MALScheduleHook',
    'depression_mask',
    'depress_feature',
    'reflected_step_ratio',
    'linear_topk',
    'REFLECTED_STEP_RATIOS',
]
