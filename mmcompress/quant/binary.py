"""Binary (1-bit) building blocks: Bi-Real / ReActNet / AdamBNN.

Everything here reproduces the behaviour of the official AdamBNN code (ReActNet-A
blocks) as described in ``specs/quantization_calibration_nas.md`` §5:

* :class:`ApproxSign`: forward ``sign(x)``, backward the derivative of Bi-Real's
  piecewise polynomial ``ApproxSign``: ``2 + 2x`` on ``[-1, 0)``, ``2 - 2x`` on
  ``[0, 1)`` and ``0`` elsewhere (i.e. ``max(0, 2 - 2|x|)``).
* :class:`ScaledSignClipSTE`: forward ``sign(W)`` times a (detached) scale, backward
  the straight-through estimator of ``clamp(W, -1, 1)``, i.e. zero gradient where
  ``|W| > 1``.
* :class:`RSignQuantizer` (binary activations with a learnable per-channel
  threshold) and :class:`ScaledBinaryWeightQuantizer` (``sign(W) * mean|W|`` per output
  channel): :class:`BaseQuantizer` s, so the generic quantization transform builds
  W1A1 models from any float model with them.
* :class:`LearnableBias`, :class:`RPReLU`: ReActNet's learnable shifts around PReLU.

Like the official code, ``sign`` is ``torch.sign``, so an input of exactly ``0`` maps
to ``0`` (a measure-zero event for real-valued inputs).
"""

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .quantizers.base import BaseQuantizer


class ApproxSign(torch.autograd.Function):
    """``sign(x)`` with the ApproxSign (piecewise quadratic) surrogate gradient.

    The surrogate ``F(x)`` is ``-1`` for ``x < -1``, ``x^2 + 2x`` on ``[-1, 0)``,
    ``-x^2 + 2x`` on ``[0, 1)`` and ``1`` for ``x >= 1``; its derivative
    ``max(0, 2 - 2|x|)`` is the gradient passed backward. NaN inputs stay NaN
    (``torch.sign`` alone would map them to 0 and hide the fault).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.where(torch.isnan(x), x, torch.sign(x))

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (2 - 2 * x.abs()).clamp_(min=0)


class ScaledSignClipSTE(torch.autograd.Function):
    """``scale * sign(w)`` with the clipped straight-through gradient.

    The gradient w.r.t. ``w`` is ``grad * 1[|w| <= 1]`` (the gradient of
    ``clamp(w, -1, 1)``); ``scale`` is treated as a constant (no gradient), as
    in the official ``HardBinaryConv``.
    """

    @staticmethod
    def forward(ctx, weight: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(weight.abs() <= 1)
        return torch.sign(weight) * scale

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (inside,) = ctx.saved_tensors
        return grad_output * inside, None


def approx_sign(x: Tensor) -> Tensor:
    """Binarize ``x`` with :class:`ApproxSign` (sign forward, ApproxSign backward).

    Args:
        x (Tensor): Any real tensor.

    Returns:
        Tensor: ``torch.sign(x)`` (NaN where ``x`` is NaN).
    """
    return ApproxSign.apply(x)


class LearnableBias(nn.Module):
    """A learnable per-channel shift ``x + b`` of a feature map (ReActNet).

    The parameter has shape ``(1, C, 1, 1)`` like the official ``LearnableBias``,
    which the AdamBNN weight-decay rule depends on (it decays ``ndim == 4``
    parameters).

    Args:
        num_channels (int): Number of channels ``C`` of the ``(N, C, H, W)`` input.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        if num_channels < 1:
            raise ValueError(f'num_channels must be >= 1, got {num_channels}')
        self.bias = nn.Parameter(torch.zeros(1, num_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Add the per-channel shift."""
        if x.dim() != 4 or x.shape[1] != self.bias.shape[1]:
            raise ValueError(
                f'{type(self).__name__} expects an (N, {self.bias.shape[1]}, H, W) '
                f'input, got shape {tuple(x.shape)}'
            )
        return x + self.bias

    def extra_repr(self) -> str:
        return f'num_channels={self.bias.shape[1]}'


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift, PReLU with per-channel slope, shift.

    ``y = PReLU(x + b1) + b2`` with ``b1``, ``b2`` per channel (init 0) and the
    PReLU slope per channel (init 0.25).

    Args:
        num_channels (int): Number of channels of the ``(N, C, H, W)`` input.
        init_slope (float): Initial negative slope. Defaults to 0.25.
    """

    def __init__(self, num_channels: int, init_slope: float = 0.25) -> None:
        super().__init__()
        self.shift_in = LearnableBias(num_channels)
        init_slope = check_number('init_slope', init_slope, owner='RPReLU')
        self.prelu = nn.PReLU(num_channels, init=init_slope)
        self.shift_out = LearnableBias(num_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Apply shift, PReLU and shift."""
        return self.shift_out(self.prelu(self.shift_in(x)))


@MODELS.register_module()
class RSignQuantizer(BaseQuantizer):
    """Binary activation quantizer, ReActNet's RSign: ``sign(x + b)``.

    ``b`` is a learnable shift (``-b`` the binarization threshold), one per channel
    along ``channel_axis`` (or one per tensor), initialized to 0. Backward is the
    ApproxSign gradient (:class:`ApproxSign`) for both ``x`` and ``b``. Output
    values are ``{-1, +1}`` (``0`` only for an input of exactly ``-b``).

    Args:
        bits (int): Must be 1. Defaults to 1.
        per_channel (bool): One shift per channel (RSign) instead of one per
            tensor. Defaults to True.
        channel_axis (int): The channel dimension of the input (1 for
            ``(N, C, H, W)``, -1 for the ``(..., C)`` input of ``nn.Linear``).
            Defaults to 1.
        num_channels (int, optional): Number of channels, required when
            ``per_channel``.
        **kwargs: Other :class:`BaseQuantizer` arguments (``signed`` and
            ``narrow_range`` have no effect on a binary grid).
    """

    min_bits = 1
    max_bits = 1
    requires_init = False

    def __init__(
        self,
        bits: int = 1,
        per_channel: bool = True,
        channel_axis: int = 1,
        num_channels: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(
            bits,
            per_channel=per_channel,
            channel_axis=channel_axis,
            num_channels=num_channels,
            **kwargs,
        )
        self.shift = nn.Parameter(torch.zeros(self.param_shape))

    def quantize(self, x: Tensor) -> Tensor:
        """Return ``sign(x + shift)`` with the ApproxSign gradient."""
        return approx_sign(x + self.broadcast(self.shift, x).to(x.dtype))

    def extra_repr(self) -> str:
        return (
            f'num_channels={self.num_channels}, '
            f'channel_axis={self.channel_axis}, enabled={self.enabled}'
        )


@MODELS.register_module()
class ScaledBinaryWeightQuantizer(BaseQuantizer):
    """Binary weight quantizer ``sign(W) * mean|W|`` (official ``HardBinaryConv``).

    The scale is the mean absolute value per output channel (``per_channel``,
    the official behaviour) or over the whole tensor, recomputed from the current
    weight at every call and detached. Backward is the clipped STE: the gradient
    passes where ``|W| <= 1`` and is zero elsewhere (:class:`ScaledSignClipSTE`).

    Args:
        bits (int): Must be 1. Defaults to 1.
        per_channel (bool): One scale per output channel. Defaults to True.
        channel_axis (int): Output-channel dimension of the weight. Defaults to 0.
        num_channels (int, optional): Number of output channels, required when
            ``per_channel``.
        **kwargs: Other :class:`BaseQuantizer` arguments (``signed`` and
            ``narrow_range`` have no effect on a binary grid).
    """

    min_bits = 1
    max_bits = 1
    requires_init = False

    def __init__(
        self,
        bits: int = 1,
        per_channel: bool = True,
        channel_axis: int = 0,
        num_channels: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(
            bits,
            per_channel=per_channel,
            channel_axis=channel_axis,
            num_channels=num_channels,
            **kwargs,
        )

    def quantize(self, x: Tensor) -> Tensor:
        """Return ``sign(x) * scale`` with the clipped straight-through gradient."""
        scale = self.broadcast(self.channel_stat(x, 'absmean'), x).to(x.dtype)
        return ScaledSignClipSTE.apply(x, scale)

    def extra_repr(self) -> str:
        return f'per_channel={self.per_channel}, enabled={self.enabled}'
