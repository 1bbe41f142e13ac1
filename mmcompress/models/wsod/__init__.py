"""Weakly supervised object detection: CASD's attention self-distillation
losses and, with mmdet, the OICR detector, its proposals, image-level labels and
CorLoc (``docs/models/casd.md``)."""

from mmcompress.utils import has_package

from .casd import (
    CASDInputWiseLoss,
    CASDLayerWiseLoss,
    comprehensive_attention,
    minmax_normalize,
)

__all__ = [
    'CASDInputWiseLoss',
    'CASDLayerWiseLoss',
    'comprehensive_attention',
    'minmax_normalize',
]

if has_package('mmdet'):
    from .classifier import WSODImageClassifier, spatial_pool
    from .corloc import (
        CorLocMetric,
        ImageLevelAPMetric,
        average_precision,
        corloc_hits,
    )
    from .oicr import OICR, flip_boxes, image_level_labels
    from .oicr_head import OICRHead, oicr_pseudo_labels
    from .proposals import (
        ImageLevelLabels,
        WSODProposals,
        segment_proposals,
        sliding_window_proposals,
    )

    __all__ += [
        'CorLocMetric',
        'ImageLevelAPMetric',
        'ImageLevelLabels',
        'OICR',
        'OICRHead',
        'WSODImageClassifier',
        'WSODProposals',
        'average_precision',
        'corloc_hits',
        'flip_boxes',
        'image_level_labels',
        'oicr_pseudo_labels',
        'segment_proposals',
        'sliding_window_proposals',
        'spatial_pool',
    ]
