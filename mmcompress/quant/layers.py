"""Quantized Conv2d / ConvTranspose2d / Linear that keep the float layers'
parameter names, and their shared base :class:`QuantLayerMixin`.

Each layer type is registered with its export form in
:mod:`mmcompress.quant.handlers` (these three by
:mod:`mmcompress.quant.layer_types.builtin`; other types, e.g. ``Conv1d``,
live in their own module of :mod:`mmcompress.quant.layer_types`).

:class:`QuantConv2d`, :class:`QuantConvTranspose2d` and :class:`QuantLinear`
subclass ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.Linear`` and keep
``weight`` and ``bias`` as they are, so a float checkpoint (model zoo or
our own) loads into a quantized model unchanged and ``isinstance`` checks in
downstream code (``init_weights``, ``ConvModule``) still hold. Extra state lives in
submodules and parameters that a float checkpoint simply lacks:

* ``weight_quantizer``: fake-quantizes ``weight`` (None = float weights);
* ``act_quantizer``: fake-quantizes the layer *input* (None = float input);
* ``grad_quantizer``: a module applied to the layer output, identity in the
  forward pass, that quantizes the gradient flowing back into the layer (the
  slot for gradient quantization, e.g. INT4 training); None = float gradients;
* in eval mode, a layer whose quantizers are not initialized yet (and not
  calibrating) runs its float operation: see :class:`BaseQuantizer`;
* ``output_scale`` (+ buffer ``output_scale_initialized``): a learned scalar
  multiplying the output, created only when a quantizer emits values in a unit
  range (EWGS's alpha, DAQ's beta). It is initialized on the first batch to
  ``mean|f(x, W)| / mean|f(Q(x), Q(W))|``. With a bias:
  ``y = f(Q(x), Q(W)) * |output_scale| + bias``; when a quantizer of the layer
  is ``fused`` (and autocast is off) the scale multiplies the quantized weight
  instead, ``y = f(Q(x), Q(W) * |output_scale|, bias)``, the same value within
  float rounding at the cost of a pass over the weight instead of two over the
  output (forward and backward). As the quantizers' flags
  (:func:`~.quantizers.base.buffer_flag`), code traced by ``torch.compile``
  reads a Python copy of the buffer, refreshed by every eager forward, by the
  initialization and by ``load_state_dict``; the initialization runs eagerly.

Quantizers given as config dicts are built from the registry with
``num_channels`` and ``channel_axis`` filled in: output channels of the weight
(axis 0 for conv / linear weights ``(out, in, ...)``; axis 1 for transposed-conv
weights ``(in, out / groups, kh, kw)``, whose ``out / groups`` channels a grouped
deconv shares between groups), input channels of the activation (axis 1 for
convs, -1 for linear).
"""

import copy
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from torch import Tensor

from mmcompress.registry import MODELS

from .grad.slots import check_grad_slot
from .quantizers.base import buffer_flag, warn_traced_initialization

QuantizerSpec = Optional[Union[dict, nn.Module]]


def build_quantizer(spec: QuantizerSpec, **default_args) -> Optional[nn.Module]:
    """Build a quantizer from a config dict (or pass a module / None through).

    Args:
        spec (dict | nn.Module | None): ``dict(type='LSQQuantizer', bits=4, ...)``.
        **default_args: Filled in unless the config sets them.

    Returns:
        nn.Module | None: The quantizer.
    """
    if spec is None or isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, dict) or 'type' not in spec:
        raise TypeError(
            'a quantizer must be given as a config dict with a '
            f"'type' key (e.g. dict(type='LSQQuantizer', bits=4)), "
            f'an nn.Module or None; got {spec!r}'
        )
    return MODELS.build(copy.deepcopy(dict(spec)), default_args=default_args)


class QuantLayerMixin:
    """Shared quantizer handling of the quantized layers.

    The concrete layer defines ``_linear_op(x, weight, bias, **op_kwargs)`` (its
    float operation), ``_quantized_channels()`` (the channel counts of the
    weight and input quantizers), ``act_channel_axis``,
    ``weight_channel_axis`` and ``_float_layer_args(module)`` (the
    constructor arguments that rebuild a float layer's shape).
    """

    # not in a float checkpoint; initialized from data like the quantizers
    checkpoint_optional_state = ('output_scale', 'output_scale_initialized')
    #: Whether the layer's output error reaches ``grad_quantizer`` and its
    #: weight / input gradients are computed from the quantized error (the
    #: layer's forward ends in :meth:`quant_forward`). A layer type that
    #: sets it False refuses a gradient quantizer.
    quantized_backward = True

    def __init__(
        self,
        *args,
        weight_quantizer: QuantizerSpec = None,
        act_quantizer: QuantizerSpec = None,
        grad_quantizer: QuantizerSpec = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        out_channels, in_channels = self._quantized_channels()
        self._setup_quantizers(
            weight_quantizer, act_quantizer, grad_quantizer, out_channels, in_channels
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.quant_forward(x)

    @classmethod
    def from_float(
        cls,
        module: nn.Module,
        weight_quantizer: QuantizerSpec = None,
        act_quantizer: QuantizerSpec = None,
        grad_quantizer: QuantizerSpec = None,
    ):
        """Make a quantized copy sharing ``module``'s ``weight``/``bias``.

        Args:
            module (nn.Module): The float layer (``nn.Conv2d`` for
                :class:`QuantConv2d`, ``nn.ConvTranspose2d`` for
                :class:`QuantConvTranspose2d`, ``nn.Linear`` for
                :class:`QuantLinear`).
            weight_quantizer, act_quantizer, grad_quantizer: As in the
                constructor.

        Returns:
            nn.Module: The quantized layer.
        """
        args, kwargs = cls._float_layer_args(module)
        new = cls(
            *args,
            **kwargs,
            bias=module.bias is not None,
            device='meta',
            weight_quantizer=weight_quantizer,
            act_quantizer=act_quantizer,
            grad_quantizer=grad_quantizer,
        )
        new._adopt(module)
        return new

    act_channel_axis = 1
    weight_channel_axis = 0

    def _setup_quantizers(
        self,
        weight_quantizer: QuantizerSpec,
        act_quantizer: QuantizerSpec,
        grad_quantizer: QuantizerSpec,
        out_channels: int,
        in_channels: int,
    ) -> None:
        check_grad_slot(
            type(self).__name__,
            self.quantized_backward,
            weight_quantizer,
            act_quantizer,
            grad_quantizer,
        )
        self.weight_quantizer = build_quantizer(
            weight_quantizer,
            num_channels=out_channels,
            channel_axis=self.weight_channel_axis,
        )
        self.act_quantizer = build_quantizer(
            act_quantizer, num_channels=in_channels, channel_axis=self.act_channel_axis
        )
        self.grad_quantizer = build_quantizer(grad_quantizer)
        needs_scale = any(
            getattr(q, 'output_in_unit_range', False)
            for q in (self.weight_quantizer, self.act_quantizer)
        )
        if needs_scale:
            self.output_scale = nn.Parameter(torch.ones(1))
            self.register_buffer(
                'output_scale_initialized', torch.tensor(0, dtype=torch.uint8)
            )
            self._output_scale_initialized_flag = False
        else:
            self.output_scale = None

    def _bias_view(self, out: Tensor) -> Tensor:
        return self.bias.view([1, -1] + [1] * (out.dim() - 2))

    @torch.compiler.disable
    def _init_output_scale(
        self, x: Tensor, x_q: Tensor, w_q: Tensor, traced: bool, **op_kwargs
    ) -> None:
        if traced:
            warn_traced_initialization(type(self).__name__)
        with torch.no_grad():
            ref = self._linear_op(x, self.weight, None, **op_kwargs).abs().mean()
            quant = self._linear_op(x_q, w_q, None, **op_kwargs).abs().mean()
            scale = (ref / quant.clamp_min(1e-12)).reshape(1)
            if dist.get_world_size() > 1:
                dist.all_reduce(scale, op='mean')
            self.output_scale.data.copy_(scale)
            self.output_scale_initialized.fill_(1)
            self._output_scale_initialized_flag = True

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        if self.output_scale is not None:
            buffer_flag(self, 'output_scale_initialized')

    def quantizers_ready(self) -> bool:
        """Whether every quantizer and the output scale are initialized (or
        calibrating, i.e. allowed to initialize in eval mode).

        Returns:
            bool: False while an eval-mode forward would run the float layer.
        """
        for quantizer in (self.weight_quantizer, self.act_quantizer):
            if (
                quantizer is not None
                and hasattr(quantizer, 'initialized')
                and not buffer_flag(quantizer, 'initialized')
                and not getattr(quantizer, 'calibrating', False)
            ):
                return False
        if self.output_scale is not None and not buffer_flag(
            self, 'output_scale_initialized'
        ):
            return any(
                getattr(q, 'calibrating', False)
                for q in (self.weight_quantizer, self.act_quantizer)
            )
        return True

    def quant_forward(self, x: Tensor, **op_kwargs) -> Tensor:
        """Fake-quantized forward shared by the layer types.

        Args:
            x (Tensor): Layer input.
            **op_kwargs: Extra arguments of the layer's float operation
                (``output_padding`` of a transposed conv).

        Returns:
            Tensor: Layer output.
        """
        if not self.training and not self.quantizers_ready():
            return self._linear_op(x, self.weight, self.bias, **op_kwargs)
        x_q = x if self.act_quantizer is None else self.act_quantizer(x)
        w_q = (
            self.weight
            if self.weight_quantizer is None
            else self.weight_quantizer(self.weight)
        )
        if self.output_scale is None:
            out = self._linear_op(x_q, w_q, self.bias, **op_kwargs)
        else:
            if (
                not buffer_flag(self, 'output_scale_initialized')
                and x.numel() > 0
                and (self.training or self.quantizers_ready())
            ):
                self._init_output_scale(
                    x, x_q, w_q, torch.compiler.is_compiling(), **op_kwargs
                )
            out = self._scaled_op(x_q, w_q, **op_kwargs)
        if self.grad_quantizer is not None:
            out = self.grad_quantizer(out)
        return out

    def folds_output_scale(self, x: Tensor) -> bool:
        """Whether the output scale multiplies the quantized weight instead of
        the output: when a quantizer of the layer is ``fused`` and autocast is
        off for ``x``'s device (autocast would run the folded op in bf16).

        Args:
            x (Tensor): Layer input.

        Returns:
            bool: True for ``f(Q(x), Q(W) * |s|) + bias``.
        """
        fused = any(
            getattr(q, 'fused', False)
            for q in (self.weight_quantizer, self.act_quantizer)
        )
        return fused and not torch.is_autocast_enabled(x.device.type)

    def _scaled_op(self, x_q: Tensor, w_q: Tensor, **op_kwargs) -> Tensor:
        """``f(x_q, w_q) * |output_scale| + bias``, folded into the weight
        (:meth:`folds_output_scale`; the same value within float rounding,
        without the passes over the output forward and backward)."""
        scale = self.output_scale.abs()
        if self.folds_output_scale(x_q):
            return self._linear_op(x_q, w_q * scale, self.bias, **op_kwargs)
        out = self._linear_op(x_q, w_q, None, **op_kwargs) * scale
        if self.bias is not None:
            out = out + self._bias_view(out)
        return out

    def _adopt(self, module: nn.Module) -> None:
        """Take over the float module's parameters (same objects) and mode."""
        self.weight = module.weight
        self.bias = module.bias
        self.train(module.training)
        device = module.weight.device
        for name in ('weight_quantizer', 'act_quantizer', 'grad_quantizer'):
            child = getattr(self, name)
            if child is not None:
                child.to(device)
        if self.output_scale is not None:
            self.output_scale.data = self.output_scale.data.to(device)
            self.output_scale_initialized.data = self.output_scale_initialized.data.to(
                device
            )


class QuantConvMixin(QuantLayerMixin):
    """The quantized-layer part shared by ``nn.Conv1d`` / ``nn.Conv2d``: the
    weight ``(out, in / groups, *kernel)`` is quantized per output channel
    (axis 0), the input ``(N, C, *spatial)`` per input channel (axis 1), and the
    float operation is the layer's own ``_conv_forward``."""

    def _quantized_channels(self) -> Tuple[int, int]:
        return self.out_channels, self.in_channels

    def _linear_op(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return self._conv_forward(x, weight, bias)

    @staticmethod
    def _float_layer_args(module: nn.modules.conv._ConvNd):
        return (module.in_channels, module.out_channels, module.kernel_size), dict(
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            padding_mode=module.padding_mode,
        )


class QuantConv2d(QuantConvMixin, nn.Conv2d):
    """``nn.Conv2d`` with weight / input / gradient quantizer slots.

    Args:
        *args: ``nn.Conv2d`` positional arguments.
        weight_quantizer (dict | nn.Module, optional): Weight quantizer.
        act_quantizer (dict | nn.Module, optional): Input quantizer.
        grad_quantizer (dict | nn.Module, optional): Gradient quantizer.
        **kwargs: ``nn.Conv2d`` keyword arguments.
    """


class QuantConvTranspose2d(QuantLayerMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with weight / input / gradient quantizer slots.

    The weight ``(in, out / groups, kh, kw)`` is quantized per output channel
    along axis 1 (with ``groups > 1``, the channels of the same index in each
    group share a scale).

    Args:
        *args: ``nn.ConvTranspose2d`` positional arguments.
        weight_quantizer (dict | nn.Module, optional): Weight quantizer.
        act_quantizer (dict | nn.Module, optional): Input quantizer.
        grad_quantizer (dict | nn.Module, optional): Gradient quantizer.
        **kwargs: ``nn.ConvTranspose2d`` keyword arguments.
    """

    act_channel_axis = 1
    weight_channel_axis = 1

    def _quantized_channels(self) -> Tuple[int, int]:
        return self.out_channels // self.groups, self.in_channels

    def forward(self, x: Tensor, output_size: Optional[list] = None) -> Tensor:
        """Quantized transposed convolution.

        Args:
            x (Tensor): Input ``(N, C, H, W)`` or ``(C, H, W)``.
            output_size (list, optional): As in ``nn.ConvTranspose2d``.

        Returns:
            Tensor: Output.
        """
        num_spatial_dims = 2
        output_padding = self._output_padding(
            x,
            output_size,
            self.stride,
            self.padding,
            self.kernel_size,
            num_spatial_dims,
            self.dilation,
        )
        return self.quant_forward(x, output_padding=output_padding)

    def _linear_op(
        self, x: Tensor, weight: Tensor, bias: Optional[Tensor], output_padding=None
    ) -> Tensor:
        if output_padding is None:
            output_padding = self.output_padding
        return F.conv_transpose2d(
            x,
            weight,
            bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
        )

    @staticmethod
    def _float_layer_args(module: nn.ConvTranspose2d):
        return (module.in_channels, module.out_channels, module.kernel_size), dict(
            stride=module.stride,
            padding=module.padding,
            output_padding=module.output_padding,
            groups=module.groups,
            dilation=module.dilation,
            padding_mode=module.padding_mode,
        )


class QuantLinear(QuantLayerMixin, nn.Linear):
    """``nn.Linear`` with weight / input / gradient quantizer slots.

    Args:
        *args: ``nn.Linear`` positional arguments.
        weight_quantizer (dict | nn.Module, optional): Weight quantizer.
        act_quantizer (dict | nn.Module, optional): Input quantizer
            (per-channel along the last axis).
        grad_quantizer (dict | nn.Module, optional): Gradient quantizer.
        **kwargs: ``nn.Linear`` keyword arguments.
    """

    act_channel_axis = -1

    def _quantized_channels(self) -> Tuple[int, int]:
        return self.out_features, self.in_features

    def _linear_op(self, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.linear(x, weight, bias)

    def _bias_view(self, out: Tensor) -> Tensor:
        return self.bias

    @staticmethod
    def _float_layer_args(module: nn.Linear):
        return (module.in_features, module.out_features), {}
