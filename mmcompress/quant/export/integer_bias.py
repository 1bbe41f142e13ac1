"""``integer_bias``: the QAT model adds its biases on the int32 grids of the
integer export.

This is part of the export package because it emulates the exported graph:
the grids are those of :mod:`.storage`, shared with the export.

An integer inference engine (onnxruntime's ``QLinearConv``, after
:func:`~mmcompress.quant.export.optimize_for_onnxruntime`) folds a
BatchNorm that follows a quantized conv into the conv: the BN factor
``a = gamma / sqrt(var + eps)`` joins the per-channel weight scale, the shift
``b = (conv_bias - mean) * a + beta`` becomes an int32 bias on the
accumulator grid ``g = s_x * s_w * |a| / k`` (``s_x`` the input scale,
``s_w`` the weight scale, ``k`` an integer that spreads the channel's int8
weights, see :func:`~.storage.int32_bias`). The QAT model adds ``b`` in float. The
difference, under half a grid step, flips output roundings of a fully 8-bit
network that then cascade through the next layers.

:func:`~.storage.int32_bias` is the one definition of ``k``, the grid and
the rounded bias; the export calls it to write the int32 bias, and
:func:`enable_integer_bias` (``QuantizedModel``'s ``quant.integer_bias``)
makes the QAT model add ``round(b / g) * g`` instead of ``b`` wherever the
export will write an int32 bias:

* BN shifts. Pairing (forward hooks, no tracing): a BatchNorm whose input is
  the output tensor of a quantized layer whose handler folds a following
  BatchNorm (``folds_batchnorm``: :class:`~mmcompress.quant.layers.QuantConv2d`,
  ``QuantConv1d``, ungrouped ``QuantConvTranspose2d``, see
  :mod:`mmcompress.quant.handlers`) with a weight
  quantizer, on the same forward pass. The conv's input scale is
  its own per-tensor input quantizer or, for a conv without one (a
  ``reader`` of ``output_quantizers``), the output quantizer that produced
  its input; a conv reading a float tensor is not an integer conv and is
  left alone. When: wherever the BN normalizes with its running statistics
  (eval mode; in training only for frozen BNs, e.g. mmdet's
  ``norm_eval=True``), as the fold does. A training BN normalizes with batch
  statistics, which have no int32 grid; training is unchanged. The rounding
  is a constant for autograd (straight-through);
* the own bias of a quantized conv / deconv / linear (``Gemm``: 2-d input),
  on ``s_x * s_w / k``, in eval mode (a BN that follows folds the rounded
  bias with its shift, as the exported graph does);
* state: nothing is added to the state dict. What a forward pass found (the
  pairs, the input grids) is kept in plain attributes; the export
  (:func:`~mmcompress.quant.export.convert_for_export`) writes the rounded
  shifts and biases into the exported model (:func:`bake_integer_bias`), so
  the plain QDQ graph computes what the QAT model computes and the int8
  rewrite finds every bias already on its grid.

A conv whose output is read by something besides its BN is not folded by
the export; its BN shift stays float there, and the QAT model, which pairs
the BN all the same, rounds it: avoid such graphs (none in OpenMMLab
backbones) or leave the option off.
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from ..handlers import handler_of, quant_layer_types
from ..layers import QuantLayerMixin
from ..quantizers.base import BaseQuantizer
from .storage import INT8, int32_bias, integer_weight, weight_peak

# The module (quantized layer, or output quantizer) that produced a tensor on
# the current forward pass, with the layer's input quantizer:
# (module, quantizer | None).
_PRODUCERS = WeakIdKeyDictionary()


def _record_quantizer_output(quantizer: nn.Module, inputs: tuple, output) -> None:
    if isinstance(output, Tensor):
        _PRODUCERS[output] = (quantizer, None)


def _input_quantizer(layer: QuantLayerMixin, inputs: tuple):
    """The layer's own input quantizer or the output quantizer that produced
    its input on this forward pass (a ``reader``), else None."""
    if layer.act_quantizer is not None:
        return layer.act_quantizer
    source = (
        _PRODUCERS.get(inputs[0]) if inputs and isinstance(inputs[0], Tensor) else None
    )
    if source is not None and isinstance(source[0], BaseQuantizer):
        return source[0]
    return None


def _has_integer_op(layer: QuantLayerMixin, inputs: tuple) -> bool:
    """Whether the export rewrites the layer's op with an int32 bias (the
    handler's ``integer_input_dims``: a linear layer only on 2-d input,
    exported as ``Gemm``)."""
    handler = handler_of(layer)
    if handler.integer_input_dims is None:
        return True
    return (
        bool(inputs)
        and isinstance(inputs[0], Tensor)
        and handler.integer_op(inputs[0].dim())
    )


def _record_layer_output(layer: nn.Module, inputs: tuple, output):
    """Forward hook of :func:`enable_integer_bias` on a quantized layer: its
    own bias on the int32 grid (eval mode), and the record of its output for
    a BatchNorm reading it."""
    if not isinstance(output, Tensor):
        return None
    input_quantizer = _input_quantizer(layer, inputs)
    integer_op = _has_integer_op(layer, inputs)
    result = None
    if integer_op and not layer.training and layer.bias is not None:
        correction = own_bias_correction(layer, input_quantizer)
        if correction is not None:
            result = output + correction.to(output.dtype).reshape(
                [1, -1] + [1] * (output.dim() - 2) if output.dim() > 1 else -1
            )
    _PRODUCERS[output if result is None else result] = (layer, input_quantizer)
    # a tuple, so the quantizer does not become a submodule of the layer
    layer._integer_bias_input = (input_quantizer, integer_op)
    return result


def _input_scale(quantizer: Optional[nn.Module]) -> Optional[float]:
    """The per-tensor scale of an initialized, enabled quantizer, else None."""
    if (
        quantizer is None
        or not getattr(quantizer, 'enabled', True)
        or (
            getattr(quantizer, 'requires_init', False)
            and not quantizer.initialized.item()
        )
    ):
        return None
    scale = quantizer.export_qparams().scale
    return float(scale) if scale.numel() == 1 else None


def _integer_layer(layer: QuantLayerMixin, input_quantizer, what: str):
    """``(s_x, integer weight, scale, storage, axis)`` of a layer the export
    runs as an integer op, else None."""
    input_scale = _input_scale(input_quantizer)
    if (
        input_scale is None
        or layer.weight_quantizer is None
        or not getattr(layer.weight_quantizer, 'enabled', True)
        or not layer.quantizers_ready()
    ):
        return None
    return (input_scale, *integer_weight(layer, what or type(layer).__name__))


def own_bias_correction(
    layer: QuantLayerMixin, input_quantizer: Optional[nn.Module], what: str = ''
) -> Optional[Tensor]:
    """What the int32 bias of a quantized layer (no BN folded in) adds beyond
    its float bias: ``round(bias / g) * g - bias``, ``g = s_x * s_w / k``.

    Args:
        layer (QuantLayerMixin): The quantized conv / deconv / linear.
        input_quantizer (nn.Module, optional): The quantizer of its input
            (its own, or the output quantizer that produced it).
        what (str): Name for error messages.

    Returns:
        Tensor | None: ``(C,)``, or None where the export keeps a float bias
        (no bias, no weight quantizer, input not on a per-tensor grid,
        quantizers not initialized, a grouped deconv's shared scales).
    """
    if layer.bias is None:
        return None
    with torch.no_grad():
        parts = _integer_layer(layer, input_quantizer, what)
        if parts is None:
            return None
        input_scale, integer, scale, storage, axis = parts
        bias = layer.bias.float()
        if scale.numel() not in (1, bias.numel()):
            return None
        peak = weight_peak(integer, axis) if storage == INT8 else None
        return int32_bias(bias, input_scale, scale, peak).dequantized() - bias


def integer_bias_correction(
    conv: QuantLayerMixin,
    bn: nn.Module,
    input_quantizer: Optional[nn.Module],
    what: str = '',
) -> Optional[Tensor]:
    """What the folded int32 bias adds to a conv + BN output beyond the
    float shift: ``round(b / g) * g - b`` per channel (see the module
    docstring).

    Args:
        conv (QuantLayerMixin): The quantized conv (a layer type whose
            handler folds a following BatchNorm).
        bn (nn.Module): The BatchNorm reading its output (running statistics
            are used).
        input_quantizer (nn.Module, optional): The quantizer of the conv's
            input (its own, or the output quantizer that produced it).
        what (str): Name for error messages.

    Returns:
        Tensor | None: ``(C,)``, or None where the export keeps a float
        bias (no weight quantizer, input not on a per-tensor grid,
        quantizers not initialized).
    """
    with torch.no_grad():
        parts = _integer_layer(conv, input_quantizer, what)
        if parts is None:
            return None
        input_scale, integer, scale, storage, axis = parts
        mean, var = bn.running_mean.float(), bn.running_var.float()
        gamma = torch.ones_like(mean) if bn.weight is None else bn.weight.float()
        beta = torch.zeros_like(mean) if bn.bias is None else bn.bias.float()
        factor = gamma / torch.sqrt(var + bn.eps)
        conv_bias = torch.zeros_like(mean)
        if conv.bias is not None:
            # what the conv added: its own bias, on its int32 grid in eval
            conv_bias = conv.bias.float()
            own = (
                own_bias_correction(conv, input_quantizer, what)
                if not conv.training
                else None
            )
            if own is not None:
                conv_bias = conv_bias + own
        shift = (conv_bias - mean) * factor + beta
        folded_scale = scale.expand(mean.shape) * factor.abs()
        peak = (
            weight_peak(integer, axis).expand(mean.shape) if storage == INT8 else None
        )
        rounded = int32_bias(shift, input_scale, folded_scale, peak)
        return rounded.dequantized() - shift


def _uses_running_stats(bn: nn.Module) -> bool:
    return not bn.training and bn.track_running_stats and bn.running_mean is not None


def _apply_integer_bias(bn: nn.Module, inputs: tuple, output):
    """Forward hook of :func:`enable_integer_bias` on a BatchNorm (a
    module-level function, so deepcopy and pickling keep working)."""
    source = (
        _PRODUCERS.get(inputs[0]) if inputs and isinstance(inputs[0], Tensor) else None
    )
    handler = None if source is None else handler_of(source[0])
    # the export folds no BN into a grouped deconv (its output channels span
    # the groups of its weights)
    grouped_deconv = (
        source is not None
        and isinstance(source[0], nn.ConvTranspose2d)
        and source[0].groups != 1
    )
    if handler is None or not handler.folds_batchnorm or grouped_deconv:
        bn._integer_bias_source = ()
        return None
    bn._integer_bias_source = source
    if not _uses_running_stats(bn):
        return None
    correction = integer_bias_correction(source[0], bn, source[1])
    if correction is None:
        return None
    # recomputed with the corrected shift (not output + correction): the same
    # float operations as the BN the export writes (bake_integer_bias)
    correction = correction.to(output.dtype)
    shift = correction if bn.bias is None else bn.bias + correction
    return F.batch_norm(
        inputs[0], bn.running_mean, bn.running_var, bn.weight, shift, False, 0.0, bn.eps
    )


def _batchnorms(model: nn.Module):
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]


def enable_integer_bias(model: nn.Module) -> int:
    """Make the QAT model add its biases on the export's int32 grids (see
    the module docstring).

    Registers forward hooks (nothing joins the state dict): on each quantized
    layer (its own bias, and the record of its output) and each
    ``output_quantizer`` (the record of its output) and, first in line so it
    acts before an output quantizer of the BN, on each BatchNorm.

    Args:
        model (nn.Module): A quantized model.

    Returns:
        int: The number of BatchNorm modules hooked.
    """
    for module in model.modules():
        if getattr(module, '_integer_bias_hooked', False):
            raise ValueError(
                f'{type(module).__name__}: integer_bias is '
                'already enabled on this model'
            )
        if isinstance(module, quant_layer_types()):
            module.register_forward_hook(_record_layer_output, prepend=True)
            module._integer_bias_input = None
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_hook(_apply_integer_bias, prepend=True)
            module._integer_bias_source = None
        else:
            continue
        module._integer_bias_hooked = True
    for module in list(model.modules()):
        quantizer = getattr(module, 'output_quantizer', None)
        if isinstance(quantizer, BaseQuantizer):
            quantizer.register_forward_hook(_record_quantizer_output)
    return len(_batchnorms(model))


def integer_bias_enabled(model: nn.Module) -> bool:
    """Whether :func:`enable_integer_bias` hooked ``model``."""
    return any(getattr(m, '_integer_bias_hooked', False) for m in model.modules())


def _drop_hooks(module: nn.Module) -> None:
    for key, hook in list(module._forward_hooks.items()):
        if hook in (_apply_integer_bias, _record_layer_output):
            del module._forward_hooks[key]
    module._integer_bias_hooked = False


def bake_integer_bias(model: nn.Module) -> int:
    """Write the rounded shifts and biases into the BatchNorms and quantized
    layers and drop the hooks of :func:`enable_integer_bias` (for export:
    the exported model then computes what the hooked one did, and the int32
    rewrite finds every bias on its grid). Needs a forward pass since
    hooking (it finds the pairs and the input grids) and eval mode.

    Args:
        model (nn.Module): A model with integer bias enabled (e.g. the copy
            that :func:`~mmcompress.quant.export.convert_for_export` makes).

    Returns:
        int: The number of biases / BatchNorm shifts changed.
    """
    hooked = [
        (name, m)
        for name, m in model.named_modules()
        if getattr(m, '_integer_bias_hooked', False)
    ]
    if hooked and all(
        getattr(m, '_integer_bias_source', None) is None
        and getattr(m, '_integer_bias_input', None) is None
        for _, m in hooked
    ):
        raise ValueError(
            'integer_bias finds the input grid of each quantized layer and '
            'the conv each BatchNorm reads on a forward pass, and this model '
            'ran none since it was built; run one (export_onnx does, with its '
            'example input) before converting it'
        )
    changed = []
    # BN shifts first: they read the conv's own corrected bias, if any
    for name, bn in hooked:
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        source = bn._integer_bias_source
        _drop_hooks(bn)
        if not source or not _uses_running_stats(bn):
            continue  # not run, not after a quantized conv, or training
        correction = integer_bias_correction(source[0], bn, source[1], name)
        if correction is not None:
            changed.append((bn, correction))
    for name, layer in hooked:
        if not isinstance(layer, quant_layer_types()):
            continue
        recorded = layer._integer_bias_input
        _drop_hooks(layer)
        if recorded is None or not recorded[1] or layer.bias is None or layer.training:
            continue
        correction = own_bias_correction(layer, recorded[0], name)
        if correction is not None:
            changed.append((layer, correction))
    with torch.no_grad():
        for module, correction in changed:
            if module.bias is not None:
                module.bias.add_(correction.to(module.bias.dtype))
            else:  # a BatchNorm without affine parameters
                factor = 1 / torch.sqrt(module.running_var + module.eps)
                module.running_mean.sub_(correction / factor)
    return len(changed)
