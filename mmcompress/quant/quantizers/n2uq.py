"""N2UQ: nonuniform-to-uniform quantization (Liu et al., CVPR 2022)."""

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from ..functions import (
    clamp_far_outside,
    gste_threshold_quantize,
    stat_of_finite,
    threshold_segments,
)
from ..kernels import check_fused_flag
from ..kernels.daq_n2uq import (
    fused_channel_abs_mean,
    fused_n2uq_act_quantize,
    fused_n2uq_weight_quantize,
)
from .base import AffineQParams, BaseQuantizer


@MODELS.register_module()
class N2UQActQuantizer(BaseQuantizer):
    """N2UQ activation quantizer (``LTQ``): learnable thresholds, uniform levels.

    With ``n = 2^bits - 1`` segments of learnable widths ``a`` (used as
    ``max(a, eps)``) starting at a learnable ``start``, the input scaled by
    ``scale1`` is mapped to ``interval * #{i : x > s_i + a_i/2}`` with
    ``interval = 2/n`` (levels ``0..2``), then multiplied by ``scale2``. The
    backward is the generalized STE of
    :func:`~mmcompress.quant.functions.gste_threshold_quantize`.

    Initialization:

    * ``init='official'``: the official code's constants (``start = 0``,
      ``a_i = 2/n``, ``scale1 = scale2 = 1``; for inputs already in ~[0, 2], as
      in the paper's RPReLU blocks); nothing is taken from data.
    * ``init='data'`` (default): the same thresholds, but ``scale1 = 2 / r`` and
      ``scale2 = r / 2`` with ``r = min(max(x), mean(x) + 3 std(x))`` from the
      first batch, so the grid covers the input's range and the output keeps the
      input's units (needed when a float checkpoint's activations are not in
      [0, 2], e.g. standard ResNets). This is an mmcompress addition.

    ``fused=True`` computes the quantization in one pass forward and one
    backward (:func:`~mmcompress.quant.kernels.daq_n2uq.fused_n2uq_act_quantize`,
    a C++ kernel built on first use) for contiguous float32 / float64 CPU
    tensors; other inputs and machines without a C++ compiler (a warning says
    so once) use the eager path. The output and the input gradient are the
    eager ones bit for bit, the ``start`` / ``a`` / ``scale1`` / ``scale2``
    gradients up to float rounding (other summation order).

    Args:
        bits (int): Bit-width, 1..8.
        init (str): ``'data'`` or ``'official'``. Defaults to ``'data'``.
        eps (float): Lower bound on the widths. Defaults to 1e-3.
        fused (bool): Use the fused CPU kernel. Defaults to False.
        **kwargs: :class:`BaseQuantizer` arguments (``signed`` and
            ``per_channel`` are ignored: unsigned, per tensor).
    """

    min_bits = 1
    max_bits = 8

    def __init__(
        self,
        bits: int,
        init: str = 'data',
        eps: float = 1e-3,
        fused: bool = False,
        **kwargs,
    ) -> None:
        check_fused_flag(fused, 'N2UQActQuantizer')
        if init not in ('data', 'official'):
            raise ValueError(
                f"N2UQActQuantizer: init must be 'data' or 'official', got {init!r}"
            )
        kwargs.update(signed=False, per_channel=False)
        super().__init__(bits, **kwargs)
        if init == 'official':
            self.initialized.fill_(1)
            self.sync_flags()
        self.init = init
        self.fused = fused
        self.eps = check_number(
            'eps', eps, low=0, low_open=True, owner='N2UQActQuantizer'
        )
        n = self.num_levels - 1
        self.interval = 2.0 / n
        self.start = nn.Parameter(torch.zeros(()))
        self.a = nn.Parameter(torch.full((n,), self.interval))
        self.scale1 = nn.Parameter(torch.ones(()))
        self.scale2 = nn.Parameter(torch.ones(()))

    def init_from_data(self, x: Tensor) -> None:
        data = x.detach().to(self._stat_dtype)
        spread = data.mean() + 3 * data.std() if data.numel() > 1 else data.max()
        extent = torch.minimum(spread, data.max()).clamp_min(1e-6)
        self.scale1.data.fill_(2.0 / extent.item())
        self.scale2.data.fill_(extent.item() / 2.0)

    def quantize(self, x: Tensor) -> Tensor:
        widths = self.a.clamp_min(self.eps).to(x.dtype)
        start = self.start.to(x.dtype)
        scale1 = self.scale1.to(x.dtype)
        # the segments cover [start, start + sum(widths)] after scaling by
        # scale1; inputs far beyond (+-inf) must not reach x * scale1
        low, high = start / scale1, (start + widths.sum()) / scale1
        if self.fused:
            starts, thresholds = threshold_segments(start, widths)
            out = fused_n2uq_act_quantize(
                x,
                low,
                high,
                scale1,
                self.scale2.to(x.dtype),
                starts,
                widths,
                thresholds,
                self.interval,
            )
            if out is not None:
                return out
        x = clamp_far_outside(x, low, high)
        out = gste_threshold_quantize(x * scale1, start, widths, self.interval)
        return out * self.scale2.to(x.dtype)

    def extra_repr(self) -> str:
        fused = ', fused=True' if self.fused else ''
        return f'bits={self.bits}, init={self.init}' + fused


@MODELS.register_module()
class N2UQWeightQuantizer(BaseQuantizer):
    """N2UQ "entropy-preserving" weight quantizer (``HardQuantizeConv``).

    Per output channel (``channel_axis``: 0 for conv / linear weights, 1 for
    transposed-conv weights), ``sf = gamma * mean|W|`` (no gradient) with
    ``gamma = (2^b - 1) / 2^(b-1)``; ``w = W / sf`` is clipped to ``[-1, 1]`` and
    rounded to the ``2^b`` symmetric levels ``sf * (j/m - 1)``, ``m = (2^b-1)/2``,
    ``j = 0..2^b-1`` (2 bits: ``{-1, -1/3, 1/3, 1} * sf``). Backward is the STE to
    ``W / sf`` without a clipping mask (``dL/dW = g / sf``), as the official code.
    ``mean|W|`` is taken over the finite elements, so a +-inf weight saturates
    to ``+-sf`` and a NaN weight stays NaN, its channel's other weights being
    unaffected. A channel whose ``mean|W|`` is 0 uses ``sf = 1e-12``.

    ``fused=True`` computes the rounding in one pass forward and one backward
    (:func:`~mmcompress.quant.kernels.daq_n2uq.fused_n2uq_weight_quantize`)
    for contiguous float32 / float64 CPU tensors (``sf`` stays in Python);
    other inputs and machines without a C++ compiler use the eager path. The
    output and the gradient are the eager ones bit for bit.

    Args:
        bits (int): Bit-width, 1..8.
        fused (bool): Use the fused CPU kernel. Defaults to False.
        **kwargs: :class:`BaseQuantizer` arguments (the scale is always per
            output channel; ``signed`` and ``per_channel`` are ignored).
    """

    min_bits = 1
    max_bits = 8
    requires_init = False

    def __init__(self, bits: int, fused: bool = False, **kwargs) -> None:
        check_fused_flag(fused, 'N2UQWeightQuantizer')
        kwargs.update(signed=True, per_channel=False)
        super().__init__(bits, **kwargs)
        self.fused = fused
        self.gamma = (2**bits - 1) / 2 ** (bits - 1)
        self.half_levels = (2**bits - 1) / 2

    def _channel_scale(self, x: Tensor) -> Tensor:
        axis = self.channel_axis % x.dim() if x.dim() else 0
        dims = [d for d in range(x.dim()) if d != axis]
        absmean = fused_channel_abs_mean(x) if self.fused and axis == 0 else None
        if absmean is None:
            absmean = (
                stat_of_finite(x.detach(), 'absmean', dim=dims, keepdim=True)
                if dims
                else x.detach().abs()
            )
        scale = self.gamma * absmean
        return torch.where(scale > 0, scale, torch.full_like(scale, 1e-12))

    def quantize(self, x: Tensor) -> Tensor:
        sf = self._channel_scale(x)
        if self.fused:
            out = fused_n2uq_weight_quantize(x, sf, self.half_levels)
            if out is not None:
                return out
        scaled = x / sf
        clipped = scaled.detach().clamp(-1, 1)
        m = self.half_levels
        q = sf * (torch.round((clipped + 1) * m) / m - 1)
        # STE path; an inf weight (saturated above) would give inf - inf = NaN
        ste = torch.where(torch.isinf(x), 0, scaled)
        return q + (ste - ste.detach())

    def export_qparams(self, x: Optional[Tensor] = None) -> AffineQParams:
        if x is None:
            raise ValueError(
                'N2UQWeightQuantizer computes its scale from the '
                'weight; pass it to export_qparams(x)'
            )
        levels = 2**self.bits - 1
        scale = (self._channel_scale(x) / levels).reshape(-1)
        return AffineQParams(
            scale,
            torch.zeros_like(scale),
            -levels,
            levels,
            axis=self.channel_axis % max(x.dim(), 1),
        )
