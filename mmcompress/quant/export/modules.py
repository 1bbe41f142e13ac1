"""PyTorch export forms of the quantized layers, and the conversion of a
trained model into them.

Each quantized layer becomes the ``export_type`` of its handler
(:mod:`mmcompress.quant.handlers`): :class:`ExportQuantConv2d` /
:class:`ExportQuantConvTranspose2d` / :class:`ExportQuantLinear` for the
built-in types, computing exactly what the trained layer computes in eval
mode, written with ops that the ONNX exporter maps to QDQ:

* the input quantizer's :class:`~mmcompress.quant.quantizers.AffineQParams`
  (optional ``(x - offset) * multiplier``, then a clip to the quantizer's own
  integer range, then ``QuantizeLinear -> DequantizeLinear`` in uint8 / int8):
  :class:`ExportActQuant`;
* the weight as integer values with per-tensor or per-output-channel scales
  (the layer's ``output_scale`` folded in; :func:`~.storage.integer_weight`);
* float bias, float layers (e.g. the first conv) left as they are.

A new layer type's export form subclasses :class:`ExportLayerMixin` (it calls
``self._setup(layer, what)`` and computes its op on ``self._input(x)`` and
``self._weight()``), see :mod:`mmcompress.quant.layer_types.conv1d`.
"""

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..handlers import handler_of, layer_type_names, quant_layer_types
from ..layers import QuantConvTranspose2d, QuantLayerMixin, QuantLinear
from ..output_quantizer import attach_output_quantizer
from ..quantizers.base import AffineQParams, BaseQuantizer
from .integer_bias import bake_integer_bias, integer_bias_enabled
from .storage import INT8, UINT8, channel_view, integer_weight, storage_range


class ExportActQuant(nn.Module):
    """An input quantizer as clip + ``fake_quantize`` (exported as Q/DQ).

    Args:
        params (AffineQParams): The quantizer's affine form.
        what (str): Layer name for error messages.
        unsigned_storage (bool): Store a signed 8-bit grid as uint8 with the
            zero point moved up by 128 (the same values: ``(q - z) * s`` for
            ``q`` in ``[-128, 127]`` equals ``(q + 128 - (z + 128)) * s``).
            onnxruntime fuses ``QLinearAdd`` only when both operands and the
            sum share one integer type, so output quantizers (BN outputs
            feeding a residual ``Add`` next to an unsigned post-``ReLU``
            identity) use it. Defaults to False.
    """

    def __init__(
        self, params: AffineQParams, what: str, unsigned_storage: bool = False
    ) -> None:
        super().__init__()
        self.storage = storage_range(params.qmin, params.qmax, what)
        self.axis = params.axis
        scale = params.scale.detach().float().reshape(-1)
        zero_point = params.zero_point.detach().round().reshape(-1)
        qmin, qmax = params.qmin, params.qmax
        if unsigned_storage and self.storage == INT8:
            shift = UINT8[0] - INT8[0]
            zero_point, qmin, qmax = zero_point + shift, qmin + shift, qmax + shift
            self.storage = UINT8
        self.per_tensor = (
            (float(scale[0]), int(zero_point[0]))
            if self.axis is None or scale.numel() == 1
            else None
        )
        self.register_buffer('scale', scale)
        self.register_buffer('zero_point', zero_point.to(torch.int32))
        self.register_buffer('low', (qmin - zero_point) * scale)
        self.register_buffer('high', (qmax - zero_point) * scale)
        self.narrowed = (qmin, qmax) != self.storage
        self.register_buffer(
            'offset',
            None
            if params.offset is None
            else params.offset.detach().float().reshape(-1),
        )
        self.register_buffer(
            'multiplier',
            None
            if params.multiplier is None
            else params.multiplier.detach().float().reshape(-1),
        )

    def _view(self, value: Tensor, x: Tensor) -> Tensor:
        if self.per_tensor is not None:
            return value.reshape([1] * x.dim())
        shape = [1] * x.dim()
        shape[self.axis % x.dim()] = -1
        return value.reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        if self.offset is not None:
            x = (x - self._view(self.offset, x)) * self._view(self.multiplier, x)
        if self.narrowed:
            x = torch.clamp(x, self._view(self.low, x), self._view(self.high, x))
        if self.per_tensor is not None:
            return torch.fake_quantize_per_tensor_affine(
                x, *self.per_tensor, *self.storage
            )
        return torch.fake_quantize_per_channel_affine(
            x, self.scale, self.zero_point, self.axis % x.dim(), *self.storage
        )


class ExportLayerMixin:
    """Shared part of the export forms: the input quantizer as
    :class:`ExportActQuant`, the integer weight with its scales, the bias.

    The concrete class calls ``self._setup(layer, what)`` in its constructor
    and computes its op on ``self._input(x)``, ``self._weight()`` and
    ``self.bias``.
    """

    def _setup(self, layer: QuantLayerMixin, what: str) -> None:
        self.act = None
        if layer.act_quantizer is not None:
            self.act = ExportActQuant(layer.act_quantizer.export_qparams(), what)
        self.quantized_weight = layer.weight_quantizer is not None
        if not self.quantized_weight:
            weight = layer.weight.detach().clone()
            if layer.output_scale is not None:
                weight = weight * layer.output_scale.detach().abs()
            self.register_buffer('weight', weight)
        else:
            integer, scale, storage, axis = integer_weight(layer, what)
            self.register_buffer(
                'weight', integer * channel_view(scale, integer.dim(), axis)
            )
            self.register_buffer('w_scale', scale)
            self.register_buffer(
                'w_zero_point', torch.zeros_like(scale, dtype=torch.int32)
            )
            self.w_storage = storage
            self.w_axis = axis
            self.w_per_tensor = float(scale[0]) if axis is None else None
        self.register_buffer(
            'bias', None if layer.bias is None else layer.bias.detach().clone()
        )

    def _weight(self) -> Tensor:
        if not self.quantized_weight:
            return self.weight
        if self.w_per_tensor is not None:
            return torch.fake_quantize_per_tensor_affine(
                self.weight, self.w_per_tensor, 0, *self.w_storage
            )
        return torch.fake_quantize_per_channel_affine(
            self.weight, self.w_scale, self.w_zero_point, self.w_axis, *self.w_storage
        )

    def _input(self, x: Tensor) -> Tensor:
        return x if self.act is None else self.act(x)


class ExportConvMixin(ExportLayerMixin):
    """Export form shared by ``Conv1d`` / ``Conv2d``: the concrete class names
    its functional op as ``conv_fn`` (``F.conv1d`` / ``F.conv2d``).

    Args:
        layer (QuantConvMixin): The trained layer.
        what (str): Its name, for error messages.
    """

    conv_fn = None

    def __init__(self, layer: QuantLayerMixin, what: str) -> None:
        super().__init__()
        self._setup(layer, what)
        self.conv_args = (layer.stride, layer.padding, layer.dilation, layer.groups)
        if layer.padding_mode != 'zeros':
            raise ValueError(
                f'{what}: padding_mode={layer.padding_mode!r} is '
                "not supported by the export (only 'zeros')"
            )

    def forward(self, x: Tensor) -> Tensor:
        return type(self).conv_fn(
            self._input(x), self._weight(), self.bias, *self.conv_args
        )


class ExportQuantConv2d(ExportConvMixin, nn.Module):
    """Export form of :class:`QuantConv2d` (ONNX ``Conv``).

    Args:
        layer (QuantConv2d): The trained layer.
        what (str): Its name, for error messages.
    """

    conv_fn = F.conv2d


class ExportQuantConvTranspose2d(ExportLayerMixin, nn.Module):
    """Export form of :class:`QuantConvTranspose2d` (ONNX ``ConvTranspose``
    with a per-output-channel weight ``DequantizeLinear`` on axis 1).

    Args:
        layer (QuantConvTranspose2d): The trained layer.
        what (str): Its name, for error messages.
    """

    def __init__(self, layer: QuantConvTranspose2d, what: str) -> None:
        super().__init__()
        self._setup(layer, what)
        self.conv_args = (
            layer.stride,
            layer.padding,
            layer.output_padding,
            layer.groups,
            layer.dilation,
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(
            self._input(x), self._weight(), self.bias, *self.conv_args
        )


class ExportQuantLinear(ExportLayerMixin, nn.Module):
    """Export form of :class:`QuantLinear`.

    Args:
        layer (QuantLinear): The trained layer.
        what (str): Its name, for error messages.
    """

    def __init__(self, layer: QuantLinear, what: str) -> None:
        super().__init__()
        self._setup(layer, what)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._input(x), self._weight(), self.bias)


def _check_initialized(quantizer: Optional[nn.Module], name: str) -> None:
    if (
        quantizer is not None
        and quantizer.requires_init
        and not quantizer.initialized.item()
    ):
        raise ValueError(
            f'{name}: quantizer {type(quantizer).__name__} was never '
            'initialized (run a batch or load a QAT checkpoint first)'
        )


def convert_for_export(
    model: nn.Module, example_input: Optional[Tensor] = None
) -> nn.Module:
    """A copy of ``model`` (eval mode) with quantized layers in export form.

    Output quantizers (``output_quantizer`` children attached by
    :func:`~mmcompress.quant.output_quantizer.attach_output_quantizer`) become
    :class:`ExportActQuant` with uint8 storage: a ``QuantizeLinear ->
    DequantizeLinear`` on the module output. With ``integer_bias``
    (:mod:`.integer_bias`) the rounded BN shifts are written
    into the copy's BatchNorms (:func:`bake_integer_bias`).

    Args:
        model (nn.Module): A trained model holding quantized layers (any
            type registered in :mod:`mmcompress.quant.handlers`).
        example_input (Tensor, optional): Run once through the copy (no
            gradient, eval mode) before converting: ``integer_bias`` pairs
            BNs with convs on a forward pass. Needed only when the model
            has ``integer_bias`` and ran no forward pass since it was built.

    Returns:
        nn.Module: The converted copy; its outputs equal ``model.eval()``'s.
    """
    model = copy.deepcopy(model).eval()
    if integer_bias_enabled(model):
        if example_input is not None:
            with torch.no_grad():
                model(example_input)
        bake_integer_bias(model)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, quant_layer_types())
    ]
    if not targets:
        raise ValueError(
            f'{type(model).__name__} holds no '
            f'{layer_type_names("quant")} layer; nothing to '
            'export as QDQ'
        )
    outputs = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(getattr(module, 'output_quantizer', None), BaseQuantizer)
    ]
    for name, module in outputs:
        what = f'{name}.output_quantizer' if name else 'output_quantizer'
        _check_initialized(module.output_quantizer, what)
        module.output_quantizer = ExportActQuant(
            module.output_quantizer.export_qparams(), what, unsigned_storage=True
        )
    for name, module in targets:
        for quantizer in (module.weight_quantizer, module.act_quantizer):
            _check_initialized(quantizer, name)
        try:
            new = handler_of(module).export_type(module, name)
        except TypeError as error:
            raise TypeError(f'{name}: {error}') from error
        if hasattr(module, 'output_quantizer'):
            attach_output_quantizer(new, module.output_quantizer, name)
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model
