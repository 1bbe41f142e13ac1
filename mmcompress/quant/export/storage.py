"""How the integer graph stores a quantized layer: the 8-bit ONNX types of a
grid, the integer weight of a quantized layer and the int32 bias with its
weight-grid refinement.

These are the definitions shared by the export (:mod:`.modules`,
:mod:`.int8`) and the QAT model's ``integer_bias`` emulation
(:mod:`.integer_bias`): both compute the integer weight with
:func:`integer_weight` and the int32 bias with :func:`int32_bias`, so the
QAT model rounds exactly where and how the exported graph does.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..layers import QuantLayerMixin

INT8 = (-128, 127)
UINT8 = (0, 255)


def storage_range(qmin: int, qmax: int, what: str) -> Tuple[int, int]:
    """The 8-bit ONNX integer type that holds a grid ``[qmin, qmax]``.

    Args:
        qmin (int): Smallest integer level.
        qmax (int): Largest integer level.
        what (str): Name for the error message.

    Returns:
        tuple[int, int]: :data:`UINT8` or :data:`INT8`.
    """
    if qmin >= 0 and qmax <= 255:
        return UINT8
    if qmin >= -128 and qmax <= 127:
        return INT8
    raise ValueError(
        f'{what}: integer grid [{qmin}, {qmax}] does not fit in 8 bits, so it '
        'cannot be written as ONNX QuantizeLinear/DequantizeLinear (use at most '
        '7 bits for EWGS/DAQ/N2UQ weights, whose b-bit grid has 2^(b+1)-1 '
        'integer positions)'
    )


def channel_view(scale: Tensor, dim: int, axis: Optional[int]) -> Tensor:
    """``scale`` shaped to broadcast along ``axis`` of a ``dim``-d tensor."""
    shape = [1] * dim
    if axis is not None:
        shape[axis] = -1
    return scale.reshape(shape)


def integer_weight(
    layer: QuantLayerMixin, what: str
) -> Tuple[Tensor, Tensor, Tuple[int, int], int]:
    """The integer weight of a quantized layer as the export writes it.

    Args:
        layer (QuantLayerMixin): A quantized layer with a weight quantizer.
        what (str): Its name, for error messages.

    Returns:
        tuple: Integer-valued float weight, per-channel (or per-tensor) scale
        (the layer's ``output_scale`` folded in), storage range
        (:data:`INT8` / :data:`UINT8`) and channel axis (None per tensor).
    """
    weight = layer.weight.detach()
    quantizer = layer.weight_quantizer
    with torch.no_grad():
        fake = quantizer(weight) if quantizer is not None else weight
    params = quantizer.export_qparams(weight)
    storage = storage_range(params.qmin, params.qmax, what)
    scale = params.scale.detach().float().reshape(-1)
    if layer.output_scale is not None:
        factor = layer.output_scale.detach().abs().float()
        fake = fake * factor
        scale = scale * factor
    axis = layer.weight_channel_axis if scale.numel() > 1 else None
    view = channel_view(scale, weight.dim(), axis)
    integer = torch.round(fake / view)
    error = (integer * view - fake).abs().max()
    if error > 1e-3 * float(scale.min()) + 1e-7:
        raise ValueError(
            f'{what}: the fake-quantized weight is not on the '
            f'exported grid (max error {float(error):.3g})'
        )
    if integer.min() < params.qmin or integer.max() > params.qmax:
        raise ValueError(
            f'{what}: integer weights leave [{params.qmin}, {params.qmax}]'
        )
    return integer, scale, storage, axis


def weight_peak(integer: Tensor, axis: Optional[int]) -> Tensor:
    """Largest ``|w|`` of integer weights per channel along ``axis`` (one
    value for the whole tensor when ``axis`` is None)."""
    magnitude = integer.detach().abs()
    if axis is None:
        return magnitude.max().reshape(1)
    axis %= integer.dim()
    return magnitude.transpose(0, axis).reshape(integer.shape[axis], -1).amax(1)


@dataclass
class IntegerBias:
    """The int32 bias of an integer layer (see :func:`int32_bias`).

    Args:
        factor (Tensor): Integer ``k`` per weight-scale entry (int64).
        weight_scale (Tensor): The refined weight scale ``s_w / k`` (float32,
            shape of the given weight scale).
        scale (Tensor): The bias grid ``s_x * s_w / k`` per output channel
            (float32).
        value (Tensor): The int32 bias (in units of ``scale``).
    """

    factor: Tensor
    weight_scale: Tensor
    scale: Tensor
    value: Tensor

    def dequantized(self) -> Tensor:
        """Tensor: The bias the integer layer adds, ``value * scale``."""
        return self.value.float() * self.scale


def int32_bias(
    bias: Tensor,
    input_scale: float,
    weight_scale: Tensor,
    peak: Optional[Tensor] = None,
) -> IntegerBias:
    """The int32 bias of an integer conv / linear and its weight-grid factor.

    The bias is stored on the accumulator grid ``s_x * s_w``. Multiplying a
    channel's int8 weights by an integer ``k`` with ``|k w| <= 127`` (and
    dividing its scale by ``k``) keeps the weight values and makes that grid
    ``k`` times finer. Of the allowed ``k`` (``1 .. floor(127 / peak)``, 1
    where ``peak`` is None) the one putting the bias closest to its grid is
    taken: error ``|round(k u) - k u| / k``, ``u`` the bias in units of the
    unrefined grid, the first ``k`` on ties; with a per-tensor weight scale
    one ``k`` minimizes the mean error over the channels. LSQ 8-bit weights
    use about a sixth of the int8 range, so ``k`` goes up to about 6.
    Exact ``u8 x s8`` dot products over the full int8 range need VNNI on x86
    (or ARM), as for onnxruntime's own static quantization.

    Args:
        bias (Tensor): The float bias, one value per output channel (with a
            folded BN: ``(conv_bias - mean) * a + beta``).
        input_scale (float): The per-tensor input scale ``s_x``.
        weight_scale (Tensor): The weight scale ``s_w``, ``(C,)`` or ``(1,)``
            (with a folded BN: ``s_w * |a|``).
        peak (Tensor, optional): Largest ``|w|`` of the int8 weights per
            entry of ``weight_scale`` (:func:`weight_peak`); None: no
            refinement (``k = 1``, e.g. weights not stored as int8).

    Returns:
        IntegerBias: ``k``, the refined weight scale, the bias grid and the
        int32 bias.
    """
    bias = bias.detach().float().reshape(-1)
    weight_scale = weight_scale.detach().float().reshape(-1)
    factor = torch.ones_like(weight_scale, dtype=torch.int64)
    if peak is not None:
        units = (bias / (input_scale * weight_scale)).double()
        limit = (
            torch.floor(127 / peak.double().reshape(-1).clamp_min(1))
            .clamp_min(1)
            .to(torch.int64)
        )
        candidates = torch.arange(1, int(limit.max()) + 1, dtype=torch.float64).reshape(
            -1, 1
        )
        error = (
            torch.round(candidates * units) - candidates * units
        ).abs() / candidates
        if weight_scale.numel() == 1:
            error = error.mean(dim=1, keepdim=True)
        error = error.masked_fill(candidates > limit.reshape(1, -1), float('inf'))
        factor = error.argmin(dim=0).to(torch.int64) + 1
    refined = (weight_scale / factor).float()
    scale = (input_scale * refined.expand(bias.shape)).float()
    value = torch.round(bias / scale).to(torch.int32)
    return IntegerBias(factor, refined, scale, value)
