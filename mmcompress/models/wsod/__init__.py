"""Weakly supervised object detection: CASD's attention self-distillation
losses (``docs/models/casd.md``)."""

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
