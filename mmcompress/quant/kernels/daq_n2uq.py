"""Fused kernels of the DAQ quantizer and the N2UQ activation quantizer.

:func:`fused_daq_quantize` is the training path of
:meth:`DAQQuantizer.quantize <mmcompress.quant.quantizers.DAQQuantizer.quantize>`
(far clamp, normalization, hard rounding forward, the gradient of the soft
rounding backward); :func:`fused_n2uq_act_quantize` is
:meth:`N2UQActQuantizer.quantize
<mmcompress.quant.quantizers.N2UQActQuantizer.quantize>` (threshold count
forward, the generalized straight-through gradient backward) and
:func:`fused_n2uq_weight_quantize` the one of :class:`N2UQWeightQuantizer
<mmcompress.quant.quantizers.N2UQWeightQuantizer>`; :func:`fused_std_mean`
and :func:`fused_channel_abs_mean` give these quantizers' weight statistics
bit for bit with fewer passes. They return None where the kernel does not
apply; the caller then runs the eager path.
"""

import math
from typing import Optional

import torch
from torch import Tensor

from . import _STATE, kernel_axis, load_kernels


def daq_kernel_applies(dtype: torch.dtype, temperature: float, sigma: float) -> bool:
    """Whether the DAQ kernel reproduces the eager values for these
    hyper-parameters: the eager soft rounding is NaN where its two scores are
    equal (``beta = T / 0``), which cannot happen while the kernel weight
    ``exp(-1 / sigma^2)`` stays 4 epsilons below 1 in ``dtype`` (sigma up to
    about 1400 in float32), and its coefficient ``1 + c`` must be finite.

    Args:
        dtype (torch.dtype): Float dtype of the input.
        temperature (float): The constant ``T``.
        sigma (float): The kernel standard deviation.

    Returns:
        bool: True where the kernel applies.
    """
    info = torch.finfo(dtype)
    far = math.exp(-1.0 / sigma**2)
    return far <= 1 - 4 * info.eps and 1 + 1 / math.expm1(temperature) <= info.max


class FusedDAQQuantize(torch.autograd.Function):
    """DAQ's training forward (the hard level) and backward (the soft path's
    gradient to ``x``, ``lower`` and ``step``) on the fused kernel. ``norm``
    holds the detached standardization ``(mean, std)`` (``(0, 1)`` for
    activations). Saves ``x``; not twice differentiable."""

    @staticmethod
    def forward(ctx, x, lower, upper, step, norm, levels, hyper, weight, axis):
        flat = [t.reshape(-1).contiguous() for t in (lower, upper, step)]
        ctx.save_for_backward(x, *flat, norm)
        ctx.args = (levels, *hyper, weight, axis, lower.shape)
        return _STATE['ops'].daq_forward(x, *flat, norm, levels, *hyper, weight, axis)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        x, lower, upper, step, norm = ctx.saved_tensors
        levels, temperature, sigma, weight, axis, shape = ctx.args
        grad_x, grad_lower, grad_step = _STATE['ops'].daq_backward(
            grad_output.contiguous(),
            x,
            lower,
            upper,
            step,
            norm,
            levels,
            temperature,
            sigma,
            weight,
            axis,
        )
        return (
            grad_x,
            grad_lower.reshape(shape),
            None,
            grad_step.reshape(shape),
        ) + (None,) * 5


def fused_daq_quantize(
    x: Tensor,
    lower: Tensor,
    upper: Tensor,
    step: Tensor,
    stats: Optional[tuple],
    levels: int,
    temperature: float,
    sigma: float,
    weight: bool,
) -> Optional[Tensor]:
    """DAQ training quantization of ``x`` through the fused kernel, where it
    applies: contiguous float32 / float64 CPU tensors, one range per tensor or
    per channel along one axis, hyper-parameters accepted by
    :func:`daq_kernel_applies`.

    Args:
        x (Tensor): Input (not standardized).
        lower (Tensor): Lower bound, broadcastable against ``x``, dtype of x.
        upper (Tensor): Upper bound, same shape as ``lower`` (no gradient
            through it here: it enters through ``step``).
        step (Tensor): ``(upper - lower) / levels``, same shape.
        stats (tuple | None): Detached ``(mean, std)`` scalars of the weight
            standardization ``(x - mean) / std``; None for activations.
        levels (int): ``2^bits - 1``.
        temperature (float): The constant ``T``.
        sigma (float): The kernel standard deviation.
        weight (bool): Weight role (output ``(2k - L) / L``) or activation
            (``k / L``).

    Returns:
        Tensor | None: The quantized ``x``, or None when the kernel does not
        apply.
    """
    axis = kernel_axis(x, lower)
    if (
        axis is None
        or not daq_kernel_applies(x.dtype, temperature, sigma)
        or load_kernels() is None
    ):
        return None
    if stats is None:
        norm = torch.tensor([0.0, 1.0], dtype=x.dtype)
    else:
        norm = torch.stack([s.reshape(()) for s in stats]).detach()
    return FusedDAQQuantize.apply(
        x,
        lower,
        upper.detach(),
        step,
        norm,
        levels,
        (float(temperature), float(sigma)),
        weight,
        axis,
    )


class FusedN2UQActQuantize(torch.autograd.Function):
    """N2UQ activation quantization (far clamp, ``scale1``, threshold count,
    G-STE, ``scale2``) on the fused kernel. ``bounds`` (detached) is the far
    clamp's range, ``scales`` ``(scale1, scale2)``. Saves ``x``; not twice
    differentiable."""

    @staticmethod
    def forward(ctx, x, bounds, scales, starts, widths, thresholds, interval):
        args = (bounds, scales, starts, widths, thresholds)
        ctx.save_for_backward(x, *args)
        ctx.interval = interval
        return _STATE['ops'].n2uq_forward(x, *args, interval)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        x, *args = ctx.saved_tensors
        grad_x, grad_scales, grad_starts, grad_widths = _STATE['ops'].n2uq_backward(
            grad_output.contiguous(), x, *args, ctx.interval
        )
        return grad_x, None, grad_scales, grad_starts, grad_widths, None, None


def fused_n2uq_act_quantize(
    x: Tensor,
    low: Tensor,
    high: Tensor,
    scale1: Tensor,
    scale2: Tensor,
    starts: Tensor,
    widths: Tensor,
    thresholds: Tensor,
    interval: float,
) -> Optional[Tensor]:
    """N2UQ activation quantization of ``x`` through the fused kernel, where
    it applies (contiguous float32 / float64 CPU tensors).

    Args:
        x (Tensor): Input.
        low (Tensor): Scalar start of the segments in ``x``'s units
            (``start / scale1``), for the far clamp.
        high (Tensor): Scalar end of the segments in ``x``'s units.
        scale1 (Tensor): Scalar input scale.
        scale2 (Tensor): Scalar output scale.
        starts (Tensor): Segment starts ``(n,)`` (differentiable).
        widths (Tensor): Segment widths ``(n,)`` (differentiable).
        thresholds (Tensor): Detached thresholds ``(n,)``, increasing.
        interval (float): Output level spacing.

    Returns:
        Tensor | None: ``scale2`` times the quantized ``x * scale1``, or None
        when the kernel does not apply.
    """
    if kernel_axis(x, scale1) is None or load_kernels() is None:
        return None
    bounds = torch.stack([low.reshape(()), high.reshape(())]).detach()
    scales = torch.stack([scale1.reshape(()), scale2.reshape(())])
    return FusedN2UQActQuantize.apply(
        x,
        bounds,
        scales,
        starts.contiguous(),
        widths.contiguous(),
        thresholds.detach().contiguous(),
        float(interval),
    )


class FusedN2UQWeightQuantize(torch.autograd.Function):
    """N2UQ weight quantization on the fused kernel: forward
    ``sf * (round((clamp(x / sf, -1, 1) + 1) m) / m - 1)``, backward
    ``g / sf`` (0 for +-inf weights). ``scale`` (``sf``) is detached. Saves
    ``x``."""

    @staticmethod
    def forward(ctx, x, scale, m, axis):
        flat = scale.reshape(-1).contiguous()
        ctx.save_for_backward(x, flat)
        ctx.args = (m, axis)
        return _STATE['ops'].n2uq_weight_forward(x, flat, m, axis)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        x, scale = ctx.saved_tensors
        grad_x = _STATE['ops'].n2uq_weight_backward(
            grad_output.contiguous(), x, scale, *ctx.args
        )
        return grad_x, None, None, None


def fused_n2uq_weight_quantize(
    x: Tensor, scale: Tensor, half_levels: float
) -> Optional[Tensor]:
    """N2UQ weight quantization of ``x`` through the fused kernel, where it
    applies (contiguous float32 / float64 CPU tensors).

    Args:
        x (Tensor): The weight.
        scale (Tensor): Per-channel scale ``sf``, broadcastable against ``x``.
        half_levels (float): ``m = (2^bits - 1) / 2``.

    Returns:
        Tensor | None: The quantized weight, or None when the kernel does not
        apply.
    """
    axis = kernel_axis(x, scale)
    if axis is None or load_kernels() is None:
        return None
    return FusedN2UQWeightQuantize.apply(x, scale.detach(), float(half_levels), axis)


_SUM_LANES = {}  # dtype -> lane count of torch's CPU sum (None: none matched)


def _sum_lanes(dtype: torch.dtype) -> Optional[int]:
    """The vector lane count of torch's CPU cascade sum for ``dtype`` (it sets
    the order of the additions), found once per process by comparing the
    ``channel_abs_mean`` kernel with ``x.abs().mean`` on a probe tensor
    (rows of several lengths, magnitudes over a wide range); None when no
    lane count reproduces it."""
    if dtype not in _SUM_LANES:
        gen = torch.Generator().manual_seed(0)
        probe = torch.randn(4, 4099, generator=gen, dtype=torch.float64)
        probe = (probe * torch.randn(4, 4099, generator=gen).exp()).to(dtype)
        rows = [probe[:, :length].contiguous() for length in (4099, 1027, 70, 13)]
        _SUM_LANES[dtype] = None
        for lanes in (16, 8, 4, 2):
            if all(
                torch.equal(
                    _STATE['ops'].channel_abs_mean(row, lanes),
                    row.abs().mean(dim=1),
                )
                for row in rows
            ):
                _SUM_LANES[dtype] = lanes
                break
    return _SUM_LANES[dtype]


def fused_channel_abs_mean(x: Tensor) -> Optional[Tensor]:
    """``x.abs().mean(dims 1.., keepdim=True)`` in one pass over ``x`` (no
    ``|x|`` temporary), bit for bit (the additions in the order of torch's
    CPU sum; ``tests/quant/test_fused_kernels.py``), detached.

    Args:
        x (Tensor): A weight, channels along axis 0.

    Returns:
        Tensor | None: The per-channel mean, or None where the kernel does not
        apply (not a contiguous float32 / float64 CPU tensor of at least two
        channels and two dimensions, channels of more than ``2^21`` vectors,
        traced by ``torch.compile``, no lane count matching torch's sum) or
        where it is not finite (the caller's
        eager path then handles the non-finite elements).
    """
    if (
        x.device.type != 'cpu'
        or x.dtype not in (torch.float32, torch.float64)
        or not x.is_contiguous()
        or x.dim() < 2
        or x.shape[0] < 2
        or x.numel() == 0
        or torch.compiler.is_compiling()
        or load_kernels() is None
    ):
        return None
    lanes = _sum_lanes(x.dtype)
    # torch's cascade grows its level size past 2^19 groups of 4 vectors per
    # row; the kernel follows it, but longer rows are not tested
    if lanes is None or x.numel() // x.shape[0] > 2**21 * lanes:
        return None
    mean = _STATE['ops'].channel_abs_mean(x.detach(), lanes)
    if not bool(torch.isfinite(mean).all()):
        return None
    return mean.view([-1] + [1] * (x.dim() - 1))


_STD_MEAN_CHECKED = {}  # (numel, dtype, threads) -> the kernel gave torch's bits


def fused_std_mean(x: Tensor) -> Optional[tuple]:
    """``(x.mean(), x.std())`` of a whole tensor (DAQ's weight
    standardization) bit for bit, with one mean pass instead of two.

    Torch's ``std`` sums the squared deviations in chunks set by the thread
    count; the kernel follows the same chunking. The first call for each
    element count, dtype and thread count also computes torch's values and
    uses the kernel from then on only if they are equal.

    Args:
        x (Tensor): The weight.

    Returns:
        tuple[Tensor, Tensor] | None: 0-dim ``(mean, std)``, or None where the
        kernel does not apply (not a contiguous float32 / float64 CPU tensor
        of two elements or more, traced by ``torch.compile``, a statistic not
        finite, or the first-call comparison failed): the caller then runs
        the eager statistics.
    """
    if (
        x.device.type != 'cpu'
        or x.dtype not in (torch.float32, torch.float64)
        or not x.is_contiguous()
        or x.numel() < 2
        or torch.compiler.is_compiling()
        or load_kernels() is None
    ):
        return None
    x = x.detach()
    key = (x.numel(), x.dtype, torch.get_num_threads())
    if _STD_MEAN_CHECKED.get(key) is False:
        return None
    mean, std = _STATE['ops'].std_mean_all(x)
    if not (math.isfinite(float(mean)) and math.isfinite(float(std))):
        return None
    if key not in _STD_MEAN_CHECKED:
        _STD_MEAN_CHECKED[key] = torch.equal(mean, x.mean()) and torch.equal(
            std, x.std()
        )
        if not _STD_MEAN_CHECKED[key]:
            return None
    return mean, std
