"""AdaRound (Nagel et al., ICML 2020) as used by BRECQ (Li et al., ICLR 2021).

The weight of a layer with a calibrated step ``s`` is rounded up or down per
element by a learned variable ``V``::

    W_soft = s * clamp(floor(W / s) + h(V), qmin, qmax)
    h(V)   = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1),  zeta=1.1, gamma=-0.1

``V`` starts where ``h(V)`` equals the fractional part of ``W / s`` (so the soft
weight starts at ``W`` inside the grid); the regulariser
``lambda * sum(1 - |2 h(V) - 1|^beta)`` pushes every ``h`` to 0 or 1 while
``beta`` decays from 20 to 2 (linearly, after a warm-up of 20% of the
iterations during which the regulariser is off: :class:`LinearTempDecay`).
After optimisation the rounding is hard: ``h = 1[V >= 0]``.
"""

import torch
import torch.nn as nn
from torch import Tensor

from ..quantizers import BaseQuantizer

ZETA = 1.1
GAMMA = -0.1


def rectified_sigmoid(v: Tensor, zeta: float = ZETA, gamma: float = GAMMA) -> Tensor:
    """``h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)``."""
    return torch.clamp(torch.sigmoid(v) * (zeta - gamma) + gamma, 0, 1)


def init_v(weight: Tensor, scale: Tensor, zeta: float = ZETA, gamma: float = GAMMA):
    """``V`` with ``h(V) = W / s - floor(W / s)`` (BRECQ's ``init_alpha``).

    Args:
        weight (Tensor): The float weight.
        scale (Tensor): Steps broadcastable against ``weight``.

    Returns:
        Tensor: ``V``, same shape as ``weight``.
    """
    rest = weight / scale - torch.floor(weight / scale)
    return -torch.log((zeta - gamma) / (rest - gamma) - 1)


def rounding_regularizer(v: Tensor, beta: float) -> Tensor:
    """``sum(1 - |2 h(V) - 1|^beta)`` (without the factor lambda)."""
    return (1 - (2 * rectified_sigmoid(v) - 1).abs().pow(beta)).sum()


class LinearTempDecay:
    """``beta`` of the rounding regulariser at iteration ``t``.

    ``start_beta`` until ``warm_up * t_max``, then linear to ``end_beta`` at
    ``t_max`` (BRECQ's ``LinearTempDecay``).

    Args:
        t_max (int): Iterations.
        warm_up (float): Fraction without the regulariser. Defaults to 0.2.
        start_beta (float): Defaults to 20.
        end_beta (float): Defaults to 2.
    """

    def __init__(
        self,
        t_max: int,
        warm_up: float = 0.2,
        start_beta: float = 20.0,
        end_beta: float = 2.0,
    ) -> None:
        self.t_max = t_max
        self.start_decay = warm_up * t_max
        self.start_beta = start_beta
        self.end_beta = end_beta

    def in_warm_up(self, t: int) -> bool:
        """Whether the regulariser is off at iteration ``t``."""
        return t < self.start_decay

    def __call__(self, t: int) -> float:
        if t < self.start_decay:
            return self.start_beta
        rel = (t - self.start_decay) / max(self.t_max - self.start_decay, 1)
        return self.end_beta + (self.start_beta - self.end_beta) * max(0.0, 1 - rel)


class AdaRoundQuantizer(nn.Module):
    """Replaces a layer's calibrated weight quantizer during reconstruction.

    Args:
        base (BaseQuantizer): The calibrated weight quantizer (LSQ or uniform
            STE): its per-channel step and integer range are used, not changed.
        weight (Tensor): The layer's float weight (``V`` is initialised from it).
    """

    def __init__(self, base: BaseQuantizer, weight: Tensor) -> None:
        super().__init__()
        self.base = base
        params = base.export_qparams(weight.detach())
        scale = params.scale.detach().to(weight.device, weight.dtype)
        if params.axis is not None:
            shape = [1] * weight.dim()
            shape[params.axis % weight.dim()] = -1
            scale = scale.reshape(shape)
        else:
            scale = scale.reshape([1] * weight.dim())
        self.register_buffer('scale', scale)
        self.qmin, self.qmax = params.qmin, params.qmax
        self.register_buffer('floor', torch.floor(weight.detach() / scale))
        self.v = nn.Parameter(init_v(weight.detach(), scale))
        self.hard = False

    def forward(self, weight: Tensor) -> Tensor:
        """The soft (or, with ``hard``, the final) rounded weight."""
        h = (self.v >= 0).to(weight.dtype) if self.hard else rectified_sigmoid(self.v)
        return self.scale * torch.clamp(self.floor + h, self.qmin, self.qmax)

    def regularizer(self, beta: float) -> Tensor:
        """:func:`rounding_regularizer` of ``V``."""
        return rounding_regularizer(self.v, beta)
