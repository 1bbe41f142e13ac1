"""Plain uniform fake quantizer with the straight-through estimator (the baseline)."""

from typing import Optional

import torch
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from ..functions import round_ste
from .base import AffineQParams, BaseQuantizer


@MODELS.register_module()
class UniformSTEQuantizer(BaseQuantizer):
    """Uniform quantizer whose range comes from observed min/max, STE backward.

    The integer grid is ``[qmin, qmax]``; signed grids are symmetric around 0
    (``scale = absmax / qmax``), unsigned grids are affine
    (``scale = (max - min) / (qmax - qmin)``, integer zero point). The range is
    not learned: with ``observer='current'`` it is the min/max of the finite
    elements of the tensor being quantized (suited to weights; +-inf elements
    saturate); with ``observer='ema'`` it is an exponential
    moving average of batch min/max, updated in training and frozen in eval
    (suited to activations; like torch.ao's ``FakeQuantize`` with a moving-average
    observer); a batch whose min or max is not finite leaves the average as is.
    Backward: gradient 1 inside the range, 0 for clipped elements.

    Args:
        bits (int): Bit-width, 2..8.
        observer (str): ``'current'`` or ``'ema'``. Defaults to ``'ema'``.
        momentum (float): EMA momentum for ``observer='ema'``. Defaults to 0.1.
        **kwargs: :class:`BaseQuantizer` arguments (``signed``,
            ``per_channel``, ``channel_axis``, ``num_channels``,
            ``narrow_range``).
    """

    min_bits = 2
    max_bits = 8

    def __init__(
        self, bits: int, observer: str = 'ema', momentum: float = 0.1, **kwargs
    ) -> None:
        super().__init__(bits, **kwargs)
        if observer not in ('current', 'ema'):
            raise ValueError(
                f"UniformSTEQuantizer: observer must be 'current' or "
                f"'ema', got {observer!r}"
            )
        self.observer = observer
        self.momentum = check_number(
            'momentum',
            momentum,
            low=0,
            high=1,
            low_open=True,
            owner='UniformSTEQuantizer',
        )
        self.register_buffer('running_min', torch.zeros(self.param_shape))
        self.register_buffer('running_max', torch.zeros(self.param_shape))

    def init_from_data(self, x: Tensor) -> None:
        self.running_min.copy_(self.channel_stat(x, 'min'))
        self.running_max.copy_(self.channel_stat(x, 'max'))

    def _range(self, x: Tensor):
        if self.observer == 'current':
            return (
                self.channel_stat(x, 'min', finite_only=True),
                self.channel_stat(x, 'max', finite_only=True),
            )
        if self.training:
            with torch.no_grad():
                low, high = self.channel_stat(x, 'min'), self.channel_stat(x, 'max')
                finite = torch.isfinite(low) & torch.isfinite(high)
                self.running_min.copy_(
                    torch.where(
                        finite,
                        self.running_min.lerp(low, self.momentum),
                        self.running_min,
                    )
                )
                self.running_max.copy_(
                    torch.where(
                        finite,
                        self.running_max.lerp(high, self.momentum),
                        self.running_max,
                    )
                )
        return self.running_min, self.running_max

    def _scale_zero_point(self, low: Tensor, high: Tensor):
        eps = torch.finfo(torch.float32).eps
        if self.is_signed:
            absmax = torch.maximum(low.abs(), high.abs())
            scale = (absmax / self.qmax).clamp_min(eps)
            return scale, torch.zeros_like(scale)
        low = low.clamp(max=0)
        high = high.clamp(min=0)
        scale = ((high - low) / (self.qmax - self.qmin)).clamp_min(eps)
        zero_point = (self.qmin - torch.round(low / scale)).clamp(self.qmin, self.qmax)
        return scale, zero_point

    def quantize(self, x: Tensor) -> Tensor:
        low, high = self._range(x)
        scale, zero_point = self._scale_zero_point(low, high)
        scale = self.broadcast(scale.to(x.dtype), x)
        zero_point = self.broadcast(zero_point.to(x.dtype), x)
        lo = (self.qmin - zero_point) * scale
        hi = (self.qmax - zero_point) * scale
        clipped = torch.clamp(x, lo, hi)
        return round_ste(clipped / scale) * scale

    def export_qparams(self, x: Optional[Tensor] = None) -> AffineQParams:
        if self.observer == 'current':
            if x is None:
                raise ValueError(
                    "UniformSTEQuantizer(observer='current') takes its range from "
                    'the tensor; pass it to export_qparams(x)'
                )
            low, high = self._range(x)
        else:
            low, high = self.running_min, self.running_max
        scale, zero_point = self._scale_zero_point(
            self.channel_param(low), self.channel_param(high)
        )
        return AffineQParams(
            scale,
            zero_point,
            self.qmin,
            self.qmax,
            self.channel_axis if self.per_channel else None,
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f', observer={self.observer}'
