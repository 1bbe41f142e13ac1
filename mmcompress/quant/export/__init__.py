"""Export of quantization-aware-trained models to ONNX QDQ, and the integer
deployment they target.

* :mod:`.modules`: PyTorch export forms of the quantized layers and
  :func:`convert_for_export`;
* :mod:`.onnx_io`: :func:`export_onnx` (ONNX writing, weight folding) and the
  example-input check;
* :mod:`.runtime`: onnxruntime session and agreement helpers;
* :mod:`.int8`, :mod:`.int8_activations`, :mod:`.int8_deconv`:
  :func:`optimize_for_onnxruntime`, the integer-graph rewrite (deconvolutions
  as sub-pixel integer convs);
* :mod:`.onnx_graph`: the graph lookups both ONNX passes share;
* :mod:`.network`: :class:`NetworkWrapper`, the network part
  ``head(extract_feat(x))`` of detectors, segmentors, pose models and
  classifiers that the export writes;
* :mod:`.ort_model`: :class:`ORTModel`, that network in onnxruntime with the
  downstream's own post-processing and metric;
* :mod:`.storage`: integer weights, 8-bit storage types and the int32 bias,
  defined once for the export and the QAT model;
* :mod:`.integer_bias`: the QAT model's emulation of those int32 biases
  (``QuantizedModel``'s ``quant.integer_bias``).
"""

from .int8 import optimize_for_onnxruntime
from .int8_activations import INTEGER_OPS, VALUE_PRESERVING_OPS
from .integer_bias import bake_integer_bias, enable_integer_bias, integer_bias_enabled
from .modules import (
    ExportActQuant,
    ExportLayerMixin,
    ExportQuantConv2d,
    ExportQuantConvTranspose2d,
    ExportQuantLinear,
    convert_for_export,
)
from .network import NetworkWrapper
from .onnx_graph import QUANTIZER_PREFIX_OPS
from .onnx_io import TensorModeWrapper, check_example_input, export_onnx
from .ort_model import ORTModel
from .runtime import compare_outputs, compare_with_onnxruntime, onnxruntime_session
from .storage import (
    INT8,
    UINT8,
    IntegerBias,
    int32_bias,
    integer_weight,
    storage_range,
    weight_peak,
)

__all__ = [
    'ExportActQuant',
    'ExportLayerMixin',
    'ExportQuantConv2d',
    'ExportQuantConvTranspose2d',
    'ExportQuantLinear',
    'convert_for_export',
    'export_onnx',
    'check_example_input',
    'TensorModeWrapper',
    'NetworkWrapper',
    'ORTModel',
    'compare_outputs',
    'onnxruntime_session',
    'compare_with_onnxruntime',
    'optimize_for_onnxruntime',
    'INTEGER_OPS',
    'VALUE_PRESERVING_OPS',
    'QUANTIZER_PREFIX_OPS',
    'enable_integer_bias',
    'bake_integer_bias',
    'integer_bias_enabled',
    'INT8',
    'UINT8',
    'IntegerBias',
    'int32_bias',
    'integer_weight',
    'storage_range',
    'weight_peak',
]
