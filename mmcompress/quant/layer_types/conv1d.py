"""``nn.Conv1d``: the quantized layer, its export form and its handler.

This file is the whole of the layer type (the worked example of
docs/quant/guide.md, "Adding a layer type"): the transform swaps every
``nn.Conv1d`` for :class:`QuantConv1d`, the export writes
:class:`ExportQuantConv1d` as an ONNX ``Conv`` with a per-output-channel int8
weight, and the integer-graph rewrite folds a following ``BatchNorm1d`` into
it (``folds_batchnorm``), which ``integer_bias`` emulates in the QAT model.
"""

import torch.nn as nn
import torch.nn.functional as F

from ..export.modules import ExportConvMixin
from ..handlers import QuantLayerHandler, register_quant_layer
from ..layers import QuantConvMixin


class QuantConv1d(QuantConvMixin, nn.Conv1d):
    """``nn.Conv1d`` with weight / input / gradient quantizer slots.

    The weight ``(out, in / groups, k)`` is quantized per output channel
    (axis 0), the input ``(N, C, L)`` per input channel (axis 1).

    Args:
        *args: ``nn.Conv1d`` positional arguments.
        weight_quantizer (dict | nn.Module, optional): Weight quantizer.
        act_quantizer (dict | nn.Module, optional): Input quantizer.
        grad_quantizer (dict | nn.Module, optional): Gradient quantizer.
        **kwargs: ``nn.Conv1d`` keyword arguments.
    """


class ExportQuantConv1d(ExportConvMixin, nn.Module):
    """Export form of :class:`QuantConv1d` (ONNX ``Conv``).

    Args:
        layer (QuantConv1d): The trained layer.
        what (str): Its name, for error messages.
    """

    conv_fn = F.conv1d


register_quant_layer(
    QuantLayerHandler(
        float_types=(nn.Conv1d,),
        quant_type=QuantConv1d,
        export_type=ExportQuantConv1d,
        onnx_ops=('Conv',),
        folds_batchnorm=True,
    )
)
