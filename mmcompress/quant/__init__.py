"""Quantization: fake-quant functions, quantizers, quantized layers, the model
transform, hooks and ONNX export."""
from .binary import (LearnableBias, RPReLU, RSignQuantizer,
                     ScaledBinaryWeightQuantizer)
from .hooks import (EWGSHessianDeltaHook, estimate_ewgs_deltas,
                    hutchinson_trace)
from .layers import (QuantConv2d, QuantConvTranspose2d, QuantLinear,
                     build_quantizer)
from .quantizers import (AffineQParams, BaseQuantizer, DAQQuantizer,
                         EWGSQuantizer, LSQQuantizer, N2UQActQuantizer,
                         N2UQWeightQuantizer, UniformSTEQuantizer)
from .transform import (DEFAULT_OUTPUT_LAYERS, build_quantized_model,
                        eligible_layers, quantize_model)

__all__ = [
    'AffineQParams', 'BaseQuantizer', 'UniformSTEQuantizer', 'LSQQuantizer',
    'EWGSQuantizer', 'DAQQuantizer', 'N2UQActQuantizer', 'N2UQWeightQuantizer',
    'QuantConv2d', 'QuantConvTranspose2d', 'QuantLinear', 'build_quantizer', 'quantize_model',
    'build_quantized_model', 'eligible_layers', 'DEFAULT_OUTPUT_LAYERS',
    'EWGSHessianDeltaHook', 'estimate_ewgs_deltas', 'hutchinson_trace',
    'RSignQuantizer', 'ScaledBinaryWeightQuantizer', 'LearnableBias', 'RPReLU'
]
