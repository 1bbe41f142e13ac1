"""Autograd building blocks of the fake quantizers.

Each function states its forward value and its gradient; the quantizers in
:mod:`mmcompress.quant.quantizers` combine them. All of them are written with
differentiable torch operations (including the custom backward of
:class:`EWGSDiscretizer`), so second derivatives exist where the Hessian-based
EWGS scale update needs them.
"""

import math

import torch
from torch import Tensor


def round_ste(x: Tensor) -> Tensor:
    """Round to the nearest integer with the straight-through gradient.

    Forward ``round(x)`` (ties to even, as ``torch.round`` and ONNX
    ``QuantizeLinear``); backward ``dL/dx = dL/dy``.

    Args:
        x (Tensor): Input.

    Returns:
        Tensor: Rounded tensor whose gradient passes through unchanged.
    """
    return x + (torch.round(x) - x).detach()


class LSQFakeQuant(torch.autograd.Function):
    """Fused LSQ fake quantization ``round(clamp(x / s, qmin, qmax)) * s``.

    One pass forward, the LSQ gradients backward (Esser et al., 2020):

    * ``dL/dx = g`` where ``qmin <= x/s <= qmax``, else 0;
    * ``dL/ds = sum(g * (round(x/s) - x/s))`` over elements inside the range,
      plus ``sum(g * qmin)`` / ``sum(g * qmax)`` over clipped ones, times the
      gradient scale ``grad_factor``; summed per channel when ``s`` is a
      per-channel tensor (broadcast against ``x``).

    ``x = +-inf`` (or a finite ``x`` whose ``x / s`` overflows) is a clipped
    element: output ``qmax * s`` / ``qmin * s``, gradient 0 to ``x`` and
    ``qmax`` / ``qmin`` to ``s``.

    Equivalent to ``round_ste(clamp(x / s', qmin, qmax)) * s'`` where ``s'`` is
    ``s`` with its gradient scaled, with fewer temporaries (this is the
    training hot path).
    """

    @staticmethod
    def forward(
        ctx, x: Tensor, step: Tensor, qmin: int, qmax: int, grad_factor: float
    ) -> Tensor:
        scaled = x / step
        levels = torch.round(scaled).clamp_(qmin, qmax)
        ctx.save_for_backward(scaled, levels, step)
        ctx.grad_factor = grad_factor
        ctx.bounds = (qmin, qmax)
        return levels * step

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        scaled, levels, step = ctx.saved_tensors
        qmin, qmax = ctx.bounds
        inside = (scaled >= qmin) & (scaled <= qmax)
        grad_x = grad_output * inside
        # where(), not levels - scaled * inside: scaled may be +-inf (inf * 0)
        grad_step_elem = grad_output * torch.where(inside, levels - scaled, levels)
        dims = (
            [d for d in range(grad_output.dim()) if step.shape[d] == 1]
            if step.dim() == grad_output.dim()
            else list(range(grad_output.dim()))
        )
        grad_step = grad_step_elem.sum(dim=dims, keepdim=step.dim() > 0)
        grad_step = grad_step.reshape(step.shape) * ctx.grad_factor
        return grad_x, grad_step, None, None, None


class _FarClamp(torch.autograd.Function):
    """``clamp(x, low, high)`` whose backward passes the gradient unchanged."""

    @staticmethod
    def forward(ctx, x: Tensor, low: Tensor, high: Tensor) -> Tensor:
        return torch.clamp(x, low, high)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return grad_output, None, None


def clamp_far_outside(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Move values farther than one range width beyond ``[low, high]`` to that
    distance; values in ``[low - w, high + w]`` (``w = |high - low|``) are
    returned unchanged, bit for bit.

    For a normalization clipped afterwards, ``clamp((x - low) / (high - low),
    0, 1)`` (or a clipped segment as in N2UQ): without this step an ``x`` of
    +-inf (or one large enough to overflow the division) makes the backward of
    the division compute ``0 * inf = NaN`` for the gradients of ``low`` and
    ``high``. The gradient passes through unchanged (no mask: the elements this
    moves are beyond the range, so the clipping that follows gives them 0), so
    the output value and every gradient are those of the plain normalization,
    bit for bit, for all other inputs, at the cost of one clamp in the forward.
    Use it only before such a clipping. No gradient flows to ``low`` and
    ``high`` through this function.

    Args:
        x (Tensor): Input.
        low (Tensor): Lower end of the range, broadcastable against ``x``.
        high (Tensor): Upper end of the range, broadcastable against ``x``.

    Returns:
        Tensor: ``x`` clamped to ``[min(low, high) - w, max(low, high) + w]``.
    """
    low, high = low.detach(), high.detach()
    width = (high - low).abs()
    return _FarClamp.apply(
        x, torch.minimum(low, high) - width, torch.maximum(low, high) + width
    )


def stat_of_finite(
    x: Tensor, fn: str, dim=None, keepdim: bool = False, unbiased: bool = True
) -> Tensor:
    """A statistic over the finite elements of ``x`` (NaN and +-inf left out),
    free of float overflow.

    Where the plain torch reduction (``x.amin``, ``x.amax``, ``x.mean``,
    ``x.abs().mean``, ``x.std``) is finite, it is the result, bit for bit: a
    non-finite element makes these reductions non-finite unless it cannot
    change them (``+inf`` for a min). Elsewhere the statistic is computed on
    the finite elements divided by their largest magnitude and scaled back, so
    values up to the float limit do not overflow the sums (``x.mean()`` of a
    thousand float32 values of 1e37 is inf); a slice without finite values
    gives 0. On the CPU that second computation runs only when needed; on
    other devices, and while traced by ``torch.compile`` (no data-dependent
    branch, no graph break), it always runs and ``torch.where`` picks the
    result, so no device synchronisation happens.

    Quantizers whose range comes from the tensor itself use it, so that an inf
    element saturates to an end level instead of making the range infinite,
    and a NaN element stays NaN without poisoning its neighbours.

    Args:
        x (Tensor): Input (not differentiated through: pass a detached tensor).
        fn (str): ``'min'``, ``'max'``, ``'mean'``, ``'absmean'`` or ``'std'``.
        dim (int | list[int], optional): Dimension(s) to reduce; None reduces
            all. Defaults to None.
        keepdim (bool): Keep the reduced dimensions. Defaults to False.
        unbiased (bool): For ``'std'``: divide by ``count - 1`` (by 1 when a
            slice has a single finite element). Defaults to True.

    Returns:
        Tensor: The statistic.
    """
    if fn not in ('min', 'max', 'mean', 'absmean', 'std'):
        raise ValueError(
            f'unknown statistic {fn!r}; valid: min, max, mean, absmean, std'
        )
    reduce = {} if dim is None else dict(dim=dim, keepdim=keepdim)
    data = x.abs() if fn == 'absmean' else x
    if fn == 'min':
        plain = data.amin(**reduce)
    elif fn == 'max':
        plain = data.amax(**reduce)
    elif fn == 'std':
        plain = data.std(unbiased=unbiased, **reduce)
    else:
        plain = data.mean(**reduce)
    plain_ok = torch.isfinite(plain)
    if (
        x.device.type == 'cpu'
        and not torch.compiler.is_compiling()
        and bool(plain_ok.all())
    ):
        return plain
    return torch.where(
        plain_ok, plain, _finite_fallback(data, fn, dim, keepdim, unbiased)
    )


def _finite_fallback(
    data: Tensor, fn: str, dim, keepdim: bool, unbiased: bool
) -> Tensor:
    """:func:`stat_of_finite` where the plain reduction is not finite."""
    dims = (
        list(range(data.dim()))
        if dim is None
        else ([dim] if isinstance(dim, int) else list(dim))
    )
    keep = dict(dim=dims, keepdim=True)
    finite = torch.isfinite(data)
    count = finite.sum(**keep)
    if fn in ('min', 'max'):
        fill = float('inf') if fn == 'min' else float('-inf')
        masked = torch.where(finite, data, fill)
        value = masked.amin(**keep) if fn == 'min' else masked.amax(**keep)
        value = torch.where(count > 0, value, torch.zeros_like(value))
    else:
        kept = torch.where(finite, data, 0)
        scale = kept.abs().amax(**keep)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        scaled = kept / scale
        mean = scaled.sum(**keep) / count.clamp_min(1)
        if fn == 'std':
            squares = torch.where(finite, (scaled - mean) ** 2, 0).sum(**keep)
            divisor = (count - 1).clamp_min(1) if unbiased else count.clamp_min(1)
            value = (squares / divisor).sqrt() * scale
        else:
            value = mean * scale
    if dim is None:
        return value.reshape(())
    return value if keepdim else value.squeeze(tuple(dims))


def lsq_fake_quant(
    x: Tensor, step: Tensor, qmin: int, qmax: int, grad_factor: float
) -> Tensor:
    """Apply :class:`LSQFakeQuant`.

    Args:
        x (Tensor): Input.
        step (Tensor): Step size, broadcastable against ``x``.
        qmin (int): Smallest integer level.
        qmax (int): Largest integer level.
        grad_factor (float): LSQ gradient scale of the step.

    Returns:
        Tensor: Fake-quantized ``x``.
    """
    return LSQFakeQuant.apply(x, step, qmin, qmax, grad_factor)


class EWGSDiscretizer(torch.autograd.Function):
    """EWGS discretizer on a normalized input in ``[0, 1]``.

    Forward: ``x_q = round(x * (L - 1)) / (L - 1)`` with ``L`` levels.
    Backward (Lee et al., CVPR 2021, official code): ``g_x = g * (1 + delta *
    sign(g) * (x - x_q))``; ``delta = 0`` is the straight-through estimator.
    ``delta`` may be a scalar tensor (it lives in a buffer, so checkpoints carry it).
    """

    @staticmethod
    def forward(ctx, x: Tensor, num_levels: int, delta: Tensor) -> Tensor:
        x_q = torch.round(x * (num_levels - 1)) / (num_levels - 1)
        ctx.save_for_backward(x - x_q, delta)
        return x_q

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        diff, delta = ctx.saved_tensors
        scale = 1 + delta * torch.sign(grad_output) * diff
        return grad_output * scale, None, None


def ewgs_discretize(x: Tensor, num_levels: int, delta: Tensor) -> Tensor:
    """Apply :class:`EWGSDiscretizer`.

    Args:
        x (Tensor): Normalized input in ``[0, 1]``.
        num_levels (int): Number of levels ``L = 2^bits``.
        delta (Tensor): Scalar gradient-scaling factor.

    Returns:
        Tensor: The discretized tensor.
    """
    return EWGSDiscretizer.apply(x, num_levels, delta)


def _abs_sign_one_at_zero(x: Tensor) -> Tensor:
    """``|x|`` whose derivative at 0 is +1 (as the DAQ code's ``sign`` use)."""
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype).detach()
    return x * sign


def daq_soft_round(t: Tensor, temperature: float, sigma: float) -> Tensor:
    """DAQ distance-aware soft rounding of ``t`` (in units of levels).

    With ``f = floor(t)`` (no gradient) and ``r = t - f``, the two neighbouring
    levels ``q = (0, 1)`` get distance scores ``m_k = exp(-|r - q_k|)``, a Gaussian
    kernel centred at the nearest level ``ker_k = exp(-(q_k - q_*)^2 / sigma^2)``,
    scores ``s_k = m_k * ker_k``, the temperature ``beta = T / |s_0 - s_1|``
    (no gradient), ``p = softmax(beta * s)`` and the rescaled output
    ``(q_0 - c) p_0 + (q_1 + c) p_1 + f`` with ``c = 1 / (e^T - 1)``. Because the
    winning probability is always ``sigmoid(T)``, the value equals the nearest
    level exactly in real arithmetic (Kim et al., ICCV 2021); only the gradient
    differs from the straight-through estimator.

    Args:
        t (Tensor): Input in level units (already clamped to the grid range).
        temperature (float): The constant ``T`` (gamma in the paper).
        sigma (float): Standard deviation of the Gaussian kernel.

    Returns:
        Tensor: The soft-rounded tensor (value ~= nearest level up to float
        error; see :func:`daq_round` for the bit-exact value).
    """
    floor = torch.floor(t).detach()
    r = t - floor
    m0 = torch.exp(-_abs_sign_one_at_zero(r))
    m1 = torch.exp(-_abs_sign_one_at_zero(r - 1))
    nearest_is_upper = (r > 0.5).detach()
    far = math.exp(-1.0 / sigma**2)
    s0 = torch.where(nearest_is_upper, m0 * far, m0)
    s1 = torch.where(nearest_is_upper, m1, m1 * far)
    beta = (temperature / (s0 - s1).abs()).detach()
    p1 = torch.sigmoid(beta * (s1 - s0))
    p0 = 1 - p1
    c = 1.0 / math.expm1(temperature)
    return -c * p0 + (1 + c) * p1 + floor


def daq_hard_round(t: Tensor) -> Tensor:
    """The nearest level as DAQ picks it (ties go down), no gradient.

    Args:
        t (Tensor): Input in level units.

    Returns:
        Tensor: ``floor(t) + (t - floor(t) > 0.5)``.
    """
    floor = torch.floor(t)
    return floor + (t - floor > 0.5).to(t.dtype)


def daq_round(t: Tensor, temperature: float, sigma: float) -> Tensor:
    """DAQ rounding for training: the exact hard value with the DAQ gradient.

    ``daq_hard_round(t) + soft - soft.detach()``: the forward value is bit-exact
    hard rounding (the soft value equals it up to float error, see
    :func:`daq_soft_round`) and the gradient is the soft path's.

    Args:
        t (Tensor): Input in level units.
        temperature (float): The constant ``T``.
        sigma (float): Kernel standard deviation.

    Returns:
        Tensor: Rounded tensor with the DAQ gradient.
    """
    soft = daq_soft_round(t, temperature, sigma)
    return daq_hard_round(t.detach()) + (soft - soft.detach())


def threshold_segments(start: Tensor, widths: Tensor) -> tuple:
    """The segments of :func:`gste_threshold_quantize`.

    Args:
        start (Tensor): Scalar start of the first segment.
        widths (Tensor): Segment widths, shape ``(n,)``.

    Returns:
        tuple[Tensor, Tensor]: The starts ``s_i = start + sum_{j<i} widths_j``
        (differentiable) and the detached thresholds ``s_i + widths_i / 2``.
    """
    starts = start + torch.cat([widths.new_zeros(1), torch.cumsum(widths, 0)[:-1]])
    return starts, (starts + widths / 2).detach()


def gste_threshold_quantize(
    x: Tensor, start: Tensor, widths: Tensor, interval: float
) -> Tensor:
    """N2UQ forward/backward: learnable thresholds, uniform output levels, G-STE.

    Segments ``i = 0..n-1`` start at ``s_i = start + sum_{j<i} widths_j`` and have
    width ``widths_i``. Forward: ``interval * #{i : x > s_i + widths_i / 2}``
    (threshold at the segment midpoint; levels ``0, interval, ..., n*interval``).
    Backward (generalized STE): the gradient of
    ``interval * sum_i clamp((x - s_i) / widths_i, 0, 1)``, which reaches ``x``
    (slope ``interval / widths_i`` inside segment ``i``, 0 outside
    ``[start, end]``), ``start`` and ``widths``.

    Computed with ``bucketize`` (O(numel log n) time, no ``n``-fold memory).

    Args:
        x (Tensor): Input.
        start (Tensor): Scalar start of the first segment.
        widths (Tensor): Positive segment widths, shape ``(n,)``.
        interval (float): Output level spacing.

    Returns:
        Tensor: Quantized tensor with the G-STE gradient.
    """
    n = widths.numel()
    starts, thresholds = threshold_segments(start, widths)
    count = torch.bucketize(x.detach(), thresholds, right=False)
    forward_value = count.to(x.dtype) * interval
    segment = (torch.bucketize(x.detach(), starts.detach(), right=True) - 1).clamp_(
        0, n - 1
    )
    seg_start = starts[segment]
    seg_width = widths[segment]
    backward_path = interval * (
        segment.to(x.dtype) + ((x - seg_start) / seg_width).clamp(0, 1)
    )
    return forward_value + (backward_path - backward_path.detach())
