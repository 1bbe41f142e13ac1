"""Plugin layers inserted into downstream blocks (mmcv ``plugins=`` configs)."""

from .psa import PolarizedSelfAttention

__all__ = ['PolarizedSelfAttention']
