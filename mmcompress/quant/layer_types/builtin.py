"""The built-in layer types: ``Conv2d``, ``ConvTranspose2d`` and ``Linear``
(and mmcv's thin ``Conv2d`` / ``ConvTranspose2d`` (``'deconv'``) / ``Linear``
wrappers, which add nothing to the forward).

The quantized layers live in :mod:`mmcompress.quant.layers`, their export
forms in :mod:`mmcompress.quant.export.modules`.
"""

import torch.nn as nn

from ..export.modules import (
    ExportQuantConv2d,
    ExportQuantConvTranspose2d,
    ExportQuantLinear,
)
from ..handlers import QuantLayerHandler, register_quant_layer
from ..layers import QuantConv2d, QuantConvTranspose2d, QuantLinear


def _mmcv_wrappers() -> dict:
    """mmcv's wrapper types by torch type ({} without mmcv)."""
    try:
        from mmcv.cnn.bricks import wrappers
    except ImportError:
        return {}
    return {
        nn.Conv2d: (wrappers.Conv2d,),
        nn.ConvTranspose2d: (wrappers.ConvTranspose2d,),
        nn.Linear: (wrappers.Linear,),
    }


_WRAPPERS = _mmcv_wrappers()

register_quant_layer(
    QuantLayerHandler(
        float_types=(nn.Conv2d,) + _WRAPPERS.get(nn.Conv2d, ()),
        quant_type=QuantConv2d,
        export_type=ExportQuantConv2d,
        onnx_ops=('Conv',),
        folds_batchnorm=True,
    )
)

register_quant_layer(
    QuantLayerHandler(
        float_types=(nn.ConvTranspose2d,) + _WRAPPERS.get(nn.ConvTranspose2d, ()),
        quant_type=QuantConvTranspose2d,
        export_type=ExportQuantConvTranspose2d,
        onnx_ops=('ConvTranspose',),
        folds_batchnorm=True,
    )
)

register_quant_layer(
    QuantLayerHandler(
        float_types=(nn.Linear,) + _WRAPPERS.get(nn.Linear, ()),
        quant_type=QuantLinear,
        export_type=ExportQuantLinear,
        onnx_ops=('Gemm',),
        integer_input_dims=(2,),
    )
)
