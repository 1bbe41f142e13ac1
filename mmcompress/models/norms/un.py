"""Unified Normalization (UN, Yang et al., ACM MM 2022): a LayerNorm replacement
for transformers whose inference form is a fixed per-channel affine, so it folds
into the neighbouring Linear (:func:`~mmcompress.models.norms.fuse.fuse_un`).

Training (``t`` = the iteration counter ``iters``, ``W`` = the window):

* statistics are the per-channel quadratic mean ``x2_t = mean(x**2)`` over the
  non-pad tokens of the batch (no mean subtraction);
* fluctuation smoothing in the forward: after the warm-up and once the window is
  full, the normaliser is the geometric mean of the last ``W`` values of ``x2``;
* adaptive outlier filtration (``outlier_filtration=True``): a batch whose
  arithmetic-minus-geometric mean over the window exceeds ``W`` times the
  variance of the window's ``sqrt(x2)`` is skipped: its slot holds
  ``running_var`` and it is normalised by its own statistics;
* fluctuation smoothing in the backward (:class:`UNFunction`): the per-channel
  ``mean(g * z)`` of the exact RMS-norm gradient is replaced by a moving
  average; the gradient is compensated by ``r = sqrt(var) / sqrt(running_var)``.

Inference: ``y = weight * x / sqrt(running_var + eps) + bias``.

Behaviour follows the official code (hikvision-research/Unified-Normalization,
``UN1d`` / ``UN2dFunction``), including its quirks: ``dweight`` uses ``r * z``,
``r`` is clamped to 1 until ``max(1000, warmup_iters)``, the statistics ignore
pads while the backward average ``mean(g * z)`` runs over every token. The one
addition is ``counter='step'`` (see :class:`UN`).
"""

from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

# The official code keeps the gradient compensation r at 1 for this many
# iterations at least (``max(1000, warmup_iters)``).
R_WARMUP = 1000
# r is clamped to [1 / R_CLAMP, R_CLAMP] afterwards.
R_CLAMP = 5.0
COUNTERS = ('forward', 'step')


def _smoothing_active(t: int, window: int, warmup: int, skip: bool) -> bool:
    """Whether the window statistics replace the current batch's at step t."""
    return not (t <= window or t < warmup or skip)


class UNFunction(torch.autograd.Function):
    """Training forward and smoothed backward of UN on tokens ``(M, C)``.

    ``state`` is the :class:`UN` module; its buffers are updated in place.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, stats: Tensor, state):
        t = int(state.iters.item())
        x2 = stats.pow(2).mean(dim=0)
        fp_win, eps = state.fp_window, state.eps
        skip = fp_win <= 1
        buffer_x2 = state.buffer_x2
        recorded = torch.var(torch.sqrt(buffer_x2))
        buffer_x2[t % fp_win].copy_(x2)
        if state.outlier_filtration and t >= state.warmup_iters:
            am = buffer_x2.mean(dim=0)
            gm = torch.exp(torch.log(buffer_x2).mean(dim=0))
            if bool(((am - gm) > recorded * fp_win).any()):
                buffer_x2[t % fp_win].copy_(state.running_var)
                skip = True
                state.skip_counter.add_(1)
        if _smoothing_active(t, fp_win, state.warmup_iters, skip):
            var = torch.exp(torch.log(buffer_x2).mean(dim=0))
        else:
            var = x2
        r = (var + eps).sqrt() / (state.running_var + eps).sqrt()
        if t <= max(R_WARMUP, state.warmup_iters) or skip:
            r = torch.ones_like(r)
        else:
            r = r.clamp(1 / R_CLAMP, R_CLAMP)
        z = x / (var + eps).sqrt()
        ctx.t, ctx.skip, ctx.state = t, skip, state
        ctx.save_for_backward(z, var, weight, r)
        m = state.momentum
        state.running_var.copy_(m * state.running_var + (1 - m) * var)
        return weight * z + bias

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        z, var, weight, r = ctx.saved_tensors
        state, t, skip = ctx.state, ctx.t, ctx.skip
        bp_win, m = state.bp_window, state.momentum
        g = grad_y * weight * r
        gz = (g * z).mean(dim=0)
        slot = state.buffer_gz[t % bp_win]
        slot.copy_(state.ema_gz if skip else gz)
        if _smoothing_active(t, bp_win, state.warmup_iters, skip):
            mean_gz = state.buffer_gz.mean(dim=0)
        else:
            mean_gz = gz
        state.ema_gz.copy_(state.ema_gz * m + (1 - m) * mean_gz)
        centre = mean_gz if skip else state.ema_gz
        grad_x = (g - centre * z) / (var + state.eps).sqrt()
        grad_w = (grad_y * (r * z)).sum(dim=0)
        return grad_x, grad_w, grad_y.sum(dim=0), None, None


@MODELS.register_module(name='UN')
class UN(nn.Module):
    """Unified Normalization over the last (channel) dimension of tokens.

    Use it wherever a transformer builds its LayerNorm from a config:
    ``norm_cfg=dict(type='UN', warmup_iters=..., outlier_filtration=True)``.

    Args:
        num_features (int): Channels ``C`` of inputs ``(B, N, C)`` or ``(N, C)``.
        window_size (int | tuple[int, int]): Window of the forward / backward
            smoothing (one int for both). Defaults to 4.
        warmup_iters (int): Iterations before smoothing and filtration start.
            Defaults to 4000 (official; it counts ``iters``, see ``counter``).
        outlier_filtration (bool): Adaptive outlier filtration (official:
            True for vision, False for NLP). Defaults to False.
        eps (float): Added to the variance. Defaults to 1e-5.
        momentum (float): Weight of the old value in the moving averages
            (``running_var``, ``ema_gz``). Defaults to 0.9.
        counter (str): What advances ``iters``. ``'forward'`` (official): every
            training-mode forward, so extra forwards (a teacher left in train
            mode, several forwards per step, gradient-accumulation
            micro-batches) advance it too. ``'step'``: ``iters`` is set from
            outside to the optimizer step (:class:`UNIterHook` in a runner,
            :func:`set_un_iters` in a plain loop); training forwards with
            gradients disabled then use the batch statistics and leave every
            buffer unchanged. Defaults to ``'forward'``.
    """

    _abbr_ = 'un'

    def __init__(
        self,
        num_features: int,
        window_size: Union[int, Tuple[int, int]] = 4,
        warmup_iters: int = 4000,
        outlier_filtration: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.9,
        counter: str = 'forward',
    ) -> None:
        super().__init__()
        windows = (window_size,) * 2 if isinstance(window_size, int) else window_size
        if len(tuple(windows)) != 2:
            raise ValueError(
                'UN: window_size must be an int or a (forward, backward) pair, '
                f'got {window_size!r}'
            )
        for name, win in zip(('forward window', 'backward window'), windows):
            check_number(name, win, low=1, owner='UN')
        check_number('warmup_iters', warmup_iters, low=0, owner='UN')
        check_number('eps', eps, low=0, low_open=True, owner='UN')
        check_number('momentum', momentum, low=0, high=1, high_open=True, owner='UN')
        if counter not in COUNTERS:
            raise ValueError(f'UN: counter must be one of {COUNTERS}, got {counter!r}')
        self.num_features = int(num_features)
        self.fp_window, self.bp_window = (int(w) for w in windows)
        self.warmup_iters = int(warmup_iters)
        self.outlier_filtration = bool(outlier_filtration)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.counter = counter
        c = self.num_features
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer('running_var', torch.ones(c))
        self.register_buffer('ema_gz', torch.zeros(c))
        self.register_buffer('iters', torch.zeros(1, dtype=torch.long))
        self.register_buffer('buffer_x2', torch.zeros(self.fp_window, c))
        self.register_buffer('buffer_gz', torch.zeros(self.bp_window, c))
        self.register_buffer('skip_counter', torch.zeros(1, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f'{self.num_features}, window=({self.fp_window}, {self.bp_window}), '
            f'warmup_iters={self.warmup_iters}, '
            f'outlier_filtration={self.outlier_filtration}, eps={self.eps}, '
            f'momentum={self.momentum}, counter={self.counter!r}'
        )

    def _check_input(self, x: Tensor, pad_mask: Optional[Tensor]) -> None:
        if x.dim() not in (2, 3) or x.shape[-1] != self.num_features:
            raise ValueError(
                f'UN({self.num_features}) normalises the last dimension of '
                f'tokens (B, N, {self.num_features}) or (N, {self.num_features}), '
                f'got an input of shape {tuple(x.shape)}. A (B, C, H, W) feature '
                'map needs a BatchNorm (or flatten it to (B, H*W, C) tokens first)'
            )
        if pad_mask is not None and tuple(pad_mask.shape) != tuple(x.shape[:-1]):
            raise ValueError(
                f'UN: pad_mask must have the token shape {tuple(x.shape[:-1])} '
                f'(True = pad), got {tuple(pad_mask.shape)}'
            )

    def forward(self, x: Tensor, pad_mask: Optional[Tensor] = None) -> Tensor:
        """Normalise ``x``.

        Args:
            x (Tensor): Tokens ``(B, N, C)`` or ``(N, C)``.
            pad_mask (Tensor, optional): Bool ``(B, N)`` (or ``(N,)``), True at
                pad tokens, which are left out of the statistics (but are
                normalised like the others).

        Returns:
            Tensor: Same shape as ``x``.
        """
        self._check_input(x, pad_mask)
        if not self.training:
            scale = self.weight / (self.running_var + self.eps).sqrt()
            return x * scale + self.bias
        tokens = x.reshape(-1, self.num_features)
        stats = tokens if pad_mask is None else x[~pad_mask.bool()]
        if self.counter == 'step' and not torch.is_grad_enabled():
            z = tokens / (stats.pow(2).mean(dim=0) + self.eps).sqrt()
            return (self.weight * z + self.bias).reshape(x.shape)
        if self.counter == 'forward':
            self.iters.add_(1)
        y = UNFunction.apply(tokens, self.weight, self.bias, stats.detach(), self)
        return y.reshape(x.shape)


def set_un_iters(model: nn.Module, iters: int) -> int:
    """Set the iteration counter of every :class:`UN` in ``model``.

    ``set_un_iters(model, 0)`` is the official fine-tuning tip (restart the
    warm-up after loading pretrained weights); with ``counter='step'`` call it
    with the optimizer step before each step of a plain training loop.

    Args:
        model (nn.Module): Any model.
        iters (int): The value.

    Returns:
        int: How many UN layers were set.
    """
    check_number('iters', iters, low=0, owner='set_un_iters')
    layers = [m for m in model.modules() if isinstance(m, UN)]
    for layer in layers:
        layer.iters.fill_(int(iters))
    return len(layers)
