"""Quantization: fake-quant functions, quantizers, quantized layers (one
handler per layer type), the model transform, hooks and ONNX export."""

from .binary import LearnableBias, RPReLU, RSignQuantizer, ScaledBinaryWeightQuantizer
from .config import QuantConfig
from .grad import LBTGradQuantizer, LBTIntervalInitHook
from .handlers import QuantLayerHandler, quant_handlers, register_quant_layer
from .hooks import EWGSHessianDeltaHook, estimate_ewgs_deltas, hutchinson_trace
from .layer_types.conv1d import QuantConv1d
from .layers import QuantConv2d, QuantConvTranspose2d, QuantLinear, build_quantizer
from .ptq import calibrate_ranges, reconstruct  # registers the observers
from .quantizers import (
    AffineQParams,
    BaseQuantizer,
    DAQQuantizer,
    EWGSQuantizer,
    LSQQuantizer,
    N2UQActQuantizer,
    N2UQWeightQuantizer,
    UniformSTEQuantizer,
)
from .selection import (
    DEFAULT_OUTPUT_LAYERS,
    LayerSelection,
    eligible_layers,
    override_configs,
    select_layers,
)
from .transform import (
    attach_hooks,
    build_quantized_model,
    quantize_,
    quantize_model,
    swap_layers,
)

__all__ = [
    'AffineQParams',
    'BaseQuantizer',
    'UniformSTEQuantizer',
    'LSQQuantizer',
    'EWGSQuantizer',
    'DAQQuantizer',
    'N2UQActQuantizer',
    'N2UQWeightQuantizer',
    'LBTGradQuantizer',
    'LBTIntervalInitHook',
    'QuantConv2d',
    'QuantConvTranspose2d',
    'QuantLinear',
    'QuantConv1d',
    'build_quantizer',
    'QuantConfig',
    'quantize_',
    'quantize_model',
    'build_quantized_model',
    'eligible_layers',
    'DEFAULT_OUTPUT_LAYERS',
    'LayerSelection',
    'select_layers',
    'override_configs',
    'swap_layers',
    'attach_hooks',
    'calibrate_ranges',
    'reconstruct',
    'QuantLayerHandler',
    'register_quant_layer',
    'quant_handlers',
    'EWGSHessianDeltaHook',
    'estimate_ewgs_deltas',
    'hutchinson_trace',
    'RSignQuantizer',
    'ScaledBinaryWeightQuantizer',
    'LearnableBias',
    'RPReLU',
]
