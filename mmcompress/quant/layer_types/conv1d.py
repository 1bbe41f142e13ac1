"""``nn.Conv1d``: the quantized layer, its export form and its handler.

This file is the whole of the layer type (the worked example of
docs/quant/guide.md, "Adding a layer type"): the transform swaps every
``nn.Conv1d`` for :class:`QuantConv1d`, the export writes
:class:`ExportQuantConv1d` as an ONNX ``Conv`` with a per-output-channel int8
weight, and the integer-graph rewrite folds a following ``BatchNorm1d`` into
it (``folds_batchnorm``), which ``integer_bias`` emulates in the QAT model.
"""

from typing import Optional, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..export.modules import ExportLayerMixin
from ..handlers import QuantLayerHandler, register_quant_layer
from ..layers import QuantLayerMixin


class QuantConv1d(QuantLayerMixin, nn.Conv1d):
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

    def _quantized_channels(self) -> Tuple[int, int]:
        return self.out_channels, self.in_channels

    def _linear_op(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return self._conv_forward(x, weight, bias)

    @staticmethod
    def _float_layer_args(module: nn.Conv1d):
        return (module.in_channels, module.out_channels, module.kernel_size), dict(
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            padding_mode=module.padding_mode,
        )


class ExportQuantConv1d(ExportLayerMixin, nn.Module):
    """Export form of :class:`QuantConv1d` (ONNX ``Conv``).

    Args:
        layer (QuantConv1d): The trained layer.
        what (str): Its name, for error messages.
    """

    def __init__(self, layer: QuantConv1d, what: str) -> None:
        super().__init__()
        self._setup(layer, what)
        self.conv_args = (layer.stride, layer.padding, layer.dilation, layer.groups)
        if layer.padding_mode != 'zeros':
            raise ValueError(
                f'{what}: padding_mode={layer.padding_mode!r} is '
                "not supported by the export (only 'zeros')"
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(self._input(x), self._weight(), self.bias, *self.conv_args)


register_quant_layer(
    QuantLayerHandler(
        float_types=(nn.Conv1d,),
        quant_type=QuantConv1d,
        export_type=ExportQuantConv1d,
        onnx_ops=('Conv',),
        folds_batchnorm=True,
    )
)
