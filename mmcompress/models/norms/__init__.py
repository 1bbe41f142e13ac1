"""Foldable normalisation layers for transformers: Unified Normalization
(``norm_cfg=dict(type='UN')``), the token BatchNorm baseline
(``dict(type='TokenBN')``), their deploy folding and ONNX export; the
re-estimation of batch-norm statistics during training
(``BNReestimationHook``)."""

from .export import export_folded_onnx
from .fuse import ChannelAffine, fuse_un, norm_affine
from .hooks import BNReestimationHook, UNIterHook
from .token_bn import TokenBN
from .un import UN, UNFunction, set_un_iters

__all__ = [
    'BNReestimationHook',
    'UN',
    'ChannelAffine',
    'TokenBN',
    'UNFunction',
    'UNIterHook',
    'export_folded_onnx',
    'fuse_un',
    'norm_affine',
    'set_un_iters',
]
