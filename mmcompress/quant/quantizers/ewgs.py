"""EWGS: element-wise gradient scaling (Lee, Kim, Ham, CVPR 2021)."""

import math
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from ..functions import clamp_far_outside, ewgs_discretize
from ..kernels import check_fused_flag, fused_ewgs_quantize
from .base import AffineQParams, BaseQuantizer

ROLES = ('weight', 'activation')


@MODELS.register_module()
class EWGSQuantizer(BaseQuantizer):
    """EWGS quantizer with learnable lower/upper bounds (QIL/DSQ style).

    Forward, with ``L = 2^bits`` levels::

        x_n = clamp((x - lower) / (upper - lower), 0, 1)   # zero grad outside
        x_q = round(x_n * (L - 1)) / (L - 1)                # EWGS discretizer
        out = 2 * x_q - 1   (role='weight', in [-1, 1])
        out = x_q           (role='activation', in [0, 1])

    The output lives in a normalized range, so the quantized layer multiplies its
    output by a learned ``output_scale`` (``output_in_unit_range = True``).
    Backward of the discretizer: ``g * (1 + delta * sign(g) * (x_n - x_q))``;
    ``delta`` is the buffer ``delta`` (0 = STE), fixed from config or updated from
    the Hessian trace by :class:`~mmcompress.quant.hooks.EWGSHessianDeltaHook`.
    ``lower`` / ``upper`` get their gradients through the normalization.

    Initialization on the first batch (official code): weights
    ``lower = -3 std(W)``, ``upper = 3 std(W)``; activations ``lower = min(x)``,
    ``upper = 3 std(x) / sqrt(1 - 2/pi)``. Both keep ``upper - lower >= 1e-6``
    (a constant or all-zero filter / batch would give ``lower == upper``).
    Inputs beyond the range, +-inf included, saturate with zero gradient
    (:func:`~mmcompress.quant.functions.clamp_far_outside`).

    ``fused=True`` computes all of this in one pass forward and one backward
    (:func:`~mmcompress.quant.kernels.fused_ewgs_quantize`, a C++ kernel built
    on first use) for contiguous float32 / float64 CPU tensors; other inputs,
    the Hessian-based delta update (which needs second derivatives) and
    machines without a C++ compiler (a warning says so once) use the eager
    path; so does code traced by ``torch.compile``. The output and the input
    gradient are the eager ones bit for bit, the ``lower`` / ``upper``
    gradients up to float rounding.

    Args:
        bits (int): Bit-width, 1..8.
        role (str): ``'weight'`` or ``'activation'``.
        delta (float): Initial gradient-scaling factor delta. Defaults to 0.0.
        fused (bool): Use the fused CPU kernel. Defaults to False.
        **kwargs: :class:`BaseQuantizer` arguments (``signed`` is ignored: the
            grid is fixed by ``role``).
    """

    min_bits = 1
    max_bits = 8
    output_in_unit_range = True
    #: smallest ``upper - lower`` set by the initialization
    min_range = 1e-6

    def __init__(
        self,
        bits: int,
        role: str,
        delta: float = 0.0,
        fused: bool = False,
        **kwargs,
    ) -> None:
        check_fused_flag(fused, 'EWGSQuantizer')
        if role not in ROLES:
            raise ValueError(
                f'EWGSQuantizer: role must be one of {ROLES}, got {role!r}'
            )
        delta = check_number('delta', delta, low=0, owner='EWGSQuantizer')
        kwargs['signed'] = role == 'weight'
        super().__init__(bits, **kwargs)
        self.role = role
        self.fused = fused
        self.lower = nn.Parameter(torch.zeros(self.param_shape))
        self.upper = nn.Parameter(torch.ones(self.param_shape))
        self.register_buffer('delta', torch.tensor(float(delta)))
        self.record_output = False
        self.last_discretized: Optional[Tensor] = None

    def init_from_data(self, x: Tensor) -> None:
        if self.role == 'weight':
            # a constant (e.g. all-zero) filter has std 0: keep lower < upper
            half = (3 * self.channel_stat(x, 'std')).clamp_min(self.min_range / 2)
            self.lower.data.copy_(-half)
            self.upper.data.copy_(half)
        else:
            self.lower.data.copy_(self.channel_stat(x, 'min'))
            upper = 3 * self.channel_stat(x, 'std') / math.sqrt(1 - 2 / math.pi)
            self.upper.data.copy_(
                torch.maximum(upper, self.lower.data + self.min_range)
            )

    def quantize(self, x: Tensor) -> Tensor:
        lower = self.broadcast(self.lower.to(x.dtype), x)
        upper = self.broadcast(self.upper.to(x.dtype), x)
        if self.fused and not self.record_output:
            out = fused_ewgs_quantize(
                x, lower, upper, self.num_levels, self.delta, self.role == 'weight'
            )
            if out is not None:
                return out
        x = clamp_far_outside(x, lower, upper)
        x_n = torch.clamp((x - lower) / (upper - lower), 0, 1)
        x_q = ewgs_discretize(x_n, self.num_levels, self.delta.to(x.dtype))
        if self.record_output:
            x_q.retain_grad()
            self.last_discretized = x_q
        return 2 * x_q - 1 if self.role == 'weight' else x_q

    def export_qparams(self, x: Optional[Tensor] = None) -> AffineQParams:
        axis = self.channel_axis if self.per_channel else None
        return AffineQParams.of_interval(
            self.lower, self.upper, self.num_levels, self.role, axis
        )

    def extra_repr(self) -> str:
        return (
            f'bits={self.bits}, role={self.role}, '
            f'per_channel={self.per_channel}, delta={self.delta.item():.3g}'
            + (', fused=True' if self.fused else '')
        )
