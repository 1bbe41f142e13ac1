"""Gradient quantization (LBT): quantizers of the backpropagated error and
the hook of the controller's initialisation."""

from .hook import LBTIntervalInitHook
from .quantizer import (
    LBTGradQuantizer,
    expected_sr_error,
    lbt_target,
    lbt_walk_down,
    name_grad_streams,
    quantization_error,
    quantize_gradient,
)

__all__ = [
    'LBTGradQuantizer',
    'LBTIntervalInitHook',
    'expected_sr_error',
    'lbt_target',
    'lbt_walk_down',
    'name_grad_streams',
    'quantization_error',
    'quantize_gradient',
]
