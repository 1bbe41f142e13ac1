"""DAQ: distance-aware quantization (Kim, Lee, Ham, ICCV 2021)."""

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from ..functions import clamp_far_outside, daq_hard_round, daq_round, stat_of_finite
from ..kernels import check_fused_flag
from ..kernels.daq_n2uq import fused_daq_quantize, fused_std_mean
from .base import AffineQParams, BaseQuantizer

ROLES = ('weight', 'activation')
# Valid hyper-parameter ranges: e^T overflows float64 above T ~ 709.8 (any T
# above ~20 already rounds like T = 20 in float32), and sigma^2 underflows to 0
# below ~1e-162.
MAX_TEMPERATURE = 700.0
MIN_SIGMA = 1e-150


@MODELS.register_module()
class DAQQuantizer(BaseQuantizer):
    """DAQ quantizer: distance-aware soft rounding with the temperature controller.

    Weights are standardized with detached statistics
    ``w = (W - mean(W)) / std(W)`` (over the finite elements; a constant weight
    is only centred) and quantized between learnable bounds
    ``lower``/``upper`` (initialized to -3 / +3); activations between a fixed 0 and
    a learnable ``upper`` (initialized to ``3 std(x)`` on the first batch)::

        delta = (upper - lower) / (L - 1)
        t = clamp((x - lower) / delta, 0, L - 1)        # zero grad outside
        k = DAQ-round(t)                                 # training: soft path
        out = (2k - (L - 1)) / (L - 1)   (weight, in [-1, 1])
        out = k / (L - 1)                (activation, in [0, 1])

    Inputs beyond the range, +-inf included, saturate with zero gradient
    (:func:`~mmcompress.quant.functions.clamp_far_outside`).

    In training the rounding is :func:`~mmcompress.quant.functions.daq_round`
    (value equal to hard rounding, DAQ gradient); in eval it is the hard path.
    The two give identical values. The layer multiplies its output by a learned
    ``output_scale`` (``beta`` in the paper).

    ``fused=True`` computes the training path in one pass forward and one
    backward (:func:`~mmcompress.quant.kernels.daq_n2uq.fused_daq_quantize`, a
    C++ kernel built on first use) for contiguous float32 / float64 CPU
    tensors; other inputs, eval mode, a ``sigma`` above about 1400 (float32)
    and machines without a C++ compiler (a warning says so once) use the eager
    path. The output is the eager one bit for bit; the gradients are the eager
    soft-path gradients up to float rounding (another ``exp``, other
    summation order).

    Args:
        bits (int): Bit-width, 1..8.
        role (str): ``'weight'`` or ``'activation'``.
        temperature (float): The constant T (gamma). Defaults to 2.0.
        sigma (float, optional): Gaussian kernel std; None picks the paper's
            values (1 for weights, 2 for activations). Defaults to None.
        fused (bool): Use the fused CPU kernel in training. Defaults to False.
        **kwargs: :class:`BaseQuantizer` arguments (``signed`` is ignored).
    """

    min_bits = 1
    max_bits = 8
    output_in_unit_range = True

    def __init__(
        self,
        bits: int,
        role: str,
        temperature: float = 2.0,
        sigma: Optional[float] = None,
        fused: bool = False,
        **kwargs,
    ) -> None:
        check_fused_flag(fused, 'DAQQuantizer')
        if role not in ROLES:
            raise ValueError(f'DAQQuantizer: role must be one of {ROLES}, got {role!r}')
        # exp(T) must stay finite in float64 (c = 1 / (e^T - 1)) and 1 / sigma^2
        # must not divide by an underflowed 0
        temperature = check_number(
            'temperature',
            temperature,
            low=0,
            high=MAX_TEMPERATURE,
            low_open=True,
            owner='DAQQuantizer',
        )
        sigma = (1.0 if role == 'weight' else 2.0) if sigma is None else sigma
        sigma = check_number('sigma', sigma, low=MIN_SIGMA, owner='DAQQuantizer')
        kwargs['signed'] = role == 'weight'
        super().__init__(bits, **kwargs)
        self.role = role
        self.temperature = float(temperature)
        self.sigma = float(sigma)
        self.fused = fused
        if role == 'weight':
            self.lower = nn.Parameter(torch.full(self.param_shape, -3.0))
        else:
            self.register_buffer('lower', torch.zeros(self.param_shape))
        self.upper = nn.Parameter(torch.full(self.param_shape, 3.0))

    def init_from_data(self, x: Tensor) -> None:
        if self.role == 'weight':
            self.lower.data.fill_(-3.0)
            self.upper.data.fill_(3.0)
        else:
            upper = 3 * self.channel_stat(x, 'std')
            self.upper.data.copy_(upper.clamp_min(1e-6))

    def _weight_stats(self, x: Tensor) -> Optional[tuple]:
        """The detached (mean, std) of the weight standardization (None for
        activations)."""
        if self.role != 'weight':
            return None
        data = x.detach()
        stats = fused_std_mean(data) if self.fused else None
        if stats is None:
            std = stat_of_finite(data, 'std') if data.numel() > 1 else data.new_ones(())
            stats = stat_of_finite(data, 'mean'), std
        mean, std = stats
        # a constant weight has std 0 (its centred values are 0 anyway)
        return mean, torch.where(std > 0, std, torch.ones_like(std))

    def quantize(self, x: Tensor) -> Tensor:
        levels = self.num_levels - 1
        lower = self.broadcast(self.lower.to(x.dtype), x)
        upper = self.broadcast(self.upper.to(x.dtype), x)
        step = (upper - lower) / levels
        stats = self._weight_stats(x)
        if self.fused and self.training:
            out = fused_daq_quantize(
                x,
                lower,
                upper,
                step,
                stats,
                levels,
                self.temperature,
                self.sigma,
                self.role == 'weight',
            )
            if out is not None:
                return out
        if stats is not None:
            x = (x - stats[0]) / stats[1]
        x = clamp_far_outside(x, lower, upper)
        t = torch.clamp((x - lower) / step, 0, levels)
        if self.training:
            k = daq_round(t, self.temperature, self.sigma)
        else:
            k = daq_hard_round(t)
        if self.role == 'weight':
            return (2 * k - levels) / levels
        return k / levels

    def export_qparams(self, x: Optional[Tensor] = None) -> AffineQParams:
        axis = self.channel_axis if self.per_channel else None
        return AffineQParams.of_interval(
            self.lower, self.upper, self.num_levels, self.role, axis
        )

    def extra_repr(self) -> str:
        return (
            f'bits={self.bits}, role={self.role}, '
            f'temperature={self.temperature}, sigma={self.sigma}'
            + (', fused=True' if self.fused else '')
        )
