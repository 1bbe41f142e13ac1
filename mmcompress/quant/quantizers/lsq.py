"""LSQ: learned step size quantization (Esser et al., ICLR 2020)."""

import math
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.registry import MODELS

from ..functions import lsq_fake_quant
from ..kernels import check_fused_flag, fused_lsq_fake_quant
from .base import AffineQParams, BaseQuantizer


@MODELS.register_module()
class LSQQuantizer(BaseQuantizer):
    """Learned step size quantizer.

    Forward ``x_q = round(clamp(x / s, qmin, qmax)) * s`` with a learnable step
    ``s`` (per tensor or per channel). Backward (straight-through round):

    * ``dx_q/dx = 1`` inside ``[qmin*s, qmax*s]``, else 0;
    * ``dx_q/ds = (round(x/s) - x/s)`` inside, ``qmin`` / ``qmax`` outside, times
      the gradient scale ``g = 1 / sqrt(N * qmax)`` where ``N`` is the number of
      elements sharing one step (``grad_scale=False`` drops it).

    ``fused=True`` computes the forward in one pass over the tensor and the
    backward in one more (:func:`~mmcompress.quant.kernels.fused_lsq_fake_quant`,
    a C++ kernel built on first use) for contiguous float32 / float64 CPU
    tensors; other inputs, and machines without a C++ compiler (a warning
    says so once), use the eager function. The output and the input gradient
    are the eager ones bit for bit, the step gradient up to float rounding (the
    same sum in another order).

    ``s`` is initialized on the first batch to ``2 * mean|x| / sqrt(qmax)``.

    Args:
        bits (int): Bit-width, 2..8.
        grad_scale (bool): Apply the LSQ gradient scale. Defaults to True.
        fused (bool): Use the fused CPU kernel. Defaults to False.
        **kwargs: :class:`BaseQuantizer` arguments.
    """

    min_bits = 2
    max_bits = 8

    def __init__(
        self, bits: int, grad_scale: bool = True, fused: bool = False, **kwargs
    ) -> None:
        check_fused_flag(fused, 'LSQQuantizer')
        super().__init__(bits, **kwargs)
        self.use_grad_scale = grad_scale
        self.fused = fused
        self.step = nn.Parameter(torch.ones(self.param_shape))

    def init_from_data(self, x: Tensor) -> None:
        step = 2 * self.channel_stat(x, 'absmean') / math.sqrt(self.qmax)
        self.step.data.copy_(step.clamp_min(torch.finfo(torch.float32).eps))

    def gradient_scale(self, x: Tensor) -> float:
        """The LSQ gradient scale ``1 / sqrt(N * qmax)`` for input ``x``.

        Args:
            x (Tensor): The tensor being quantized.

        Returns:
            float: The factor (1.0 when ``grad_scale=False``).
        """
        if not self.use_grad_scale:
            return 1.0
        return 1.0 / math.sqrt(x.numel() / self.param_shape[0] * self.qmax)

    def quantize(self, x: Tensor) -> Tensor:
        step = self.broadcast(self.step.to(x.dtype), x)
        fake_quant = fused_lsq_fake_quant if self.fused else lsq_fake_quant
        return fake_quant(x, step, self.qmin, self.qmax, self.gradient_scale(x))

    def export_qparams(self, x: Optional[Tensor] = None) -> AffineQParams:
        step = self.channel_param(self.step.detach()).clone()
        return AffineQParams(
            step,
            torch.zeros_like(step),
            self.qmin,
            self.qmax,
            self.channel_axis if self.per_channel else None,
        )

    def extra_repr(self) -> str:
        fused = ', fused=True' if self.fused else ''
        return super().extra_repr() + f', grad_scale={self.use_grad_scale}' + fused
