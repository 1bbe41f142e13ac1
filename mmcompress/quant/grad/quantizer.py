"""Gradient quantizers: the LBT interval controller and its baselines.

A gradient quantizer sits on the *output* of a quantized layer
(``QuantLayerMixin.grad_quantizer``, the ``g`` slot of
:class:`~mmcompress.quant.config.QuantConfig`). It is the identity in the
forward pass; in the backward pass it quantizes the error ``g = dL/dy``
arriving at the layer output, so autograd computes the layer's weight
gradient (``x_q^T g_q``), input gradient (``W_q^T g_q``) and bias gradient
(``sum g_q``) from the quantized error ``g_q`` (LBT, Kim et al., ECCV 2024;
``specs/quantization_calibration_nas.md`` §4):

    g_max = max|g|;  c = gamma * g_max;  scale = 2c / (2^b - 2)
    g_int = clamp(round((g + c) / scale + U(-0.5, 0.5)), 0, 2^b - 2)
    g_q   = g_int * scale - c

(symmetric, ``2^b - 1`` levels including 0, stochastic rounding with a
``torch.Generator`` seeded from ``seed``, the layer name and the backward
count, so a resumed run draws the same noise). The interval ``gamma`` is:

* ``interval='lbt'``: the LBT controller. After quantizing with the current
  gamma (never before: gamma is read only by the next backward, as the
  original's update after the optimizer step), with ``r = mean(|g| > gamma
  g_max)`` and ``target = c_large / (2^b - 1)``:
  ``gamma <- clamp(gamma + step * sign(r - target), gamma_min, 1)``.
  The first backward (``initialized == 0``) quantizes with gamma = 1 and
  then sets gamma by the walk-down of the original ``update_interval``: from
  gamma = 1, m = 0, repeat ``m = 0.999 m + 0.001 r``,
  ``gamma += step * sign(m - target)`` until that sign is positive (so the
  last step goes back up by ``step``), then clamp to ``[gamma_min, 1]``
  (:class:`~mmcompress.quant.grad.hook.LBTIntervalInitHook` skips that
  iteration's optimizer step, as the original does);
* ``interval='fixed'``: a constant ``gamma`` (1.0 is the min-max baseline;
  0.8 / 0.6 the fixed-clip baselines of the paper);
* ``interval='mse'``: per backward, the gamma of ``mse_grid`` minimising the
  expected squared quantization error of stochastic rounding, clipped part
  included (the MSE criterion of ACIQ, Banner et al., NeurIPS 2019, evaluated
  on the gradient itself instead of a fitted Laplace prior).

Non-finite gradients (NaN / inf anywhere in ``g``) are passed through
unchanged, gamma is left as it was and ``num_nonfinite`` counts them; an
all-zero error leaves gamma (and a pending walk-down) as it was; no
host-device synchronisation is needed except for the one-off walk-down.
State in buffers (``gamma``, ``initialized``, ``num_backward``,
``num_nonfinite``), so checkpoints carry the controller.
"""

import itertools
import weakref
import zlib
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.registry import MODELS

INTERVALS = ('lbt', 'fixed', 'mse')


def quantize_gradient(g: Tensor, c: Tensor, bits: int, noise: Tensor) -> Tensor:
    """Symmetric ``2^b - 1``-level quantization of ``g`` clipped to ``[-c, c]``.

    Args:
        g (Tensor): The gradient.
        c (Tensor): The clip value, a positive scalar tensor.
        bits (int): Bit-width.
        noise (Tensor): ``U(-0.5, 0.5)`` of ``g``'s shape (stochastic
            rounding); zeros give round-to-nearest.

    Returns:
        Tensor: ``g_q``, on the levels ``-c + k * 2c / (2^b - 2)``.
    """
    levels = 2**bits - 2
    scale = 2 * c / levels
    g_int = torch.clamp(torch.round((g + c) / scale + noise), 0, levels)
    return g_int * scale - c


def clipped_fraction(abs_g: Tensor, threshold: Tensor) -> Tensor:
    """``mean(|g| > threshold)`` as a float tensor (no synchronisation)."""
    return (abs_g > threshold).float().mean()


def lbt_target(bits: int, c_large: float = 1e-3) -> float:
    """The LBT target clipped fraction ``c_large / (2^b - 1)``."""
    return c_large / (2**bits - 1)


def lbt_walk_down(
    abs_g: Tensor,
    g_max: Tensor,
    target: float,
    step: float = 1e-3,
    momentum: float = 0.999,
    gamma_min: float = 1e-3,
) -> float:
    """The LBT first-iteration initialisation of gamma.

    The loop of the original ``train.py:update_interval``: from gamma = 1 and
    m = 0, repeat ``r = mean(|g| > gamma g_max)``, ``m = momentum m +
    (1 - momentum) r``, ``gamma += step * sign(m - target)`` until that sign
    is positive (the last iteration steps gamma back up by ``step``); the
    result is clamped to ``[gamma_min, 1]``. Below gamma = 0 every element
    counts as clipped, so the loop ends.

    Args:
        abs_g (Tensor): ``|g|`` (finite).
        g_max (Tensor): ``max|g|`` (a scalar tensor of ``abs_g``'s dtype).
        target (float): Target clipped fraction.
        step (float): Gamma step. Defaults to 1e-3.
        momentum (float): EMA momentum. Defaults to 0.999.
        gamma_min (float): Lower bound of gamma. Defaults to 1e-3.

    Returns:
        float: The initial gamma.
    """
    ordered = abs_g.flatten().sort().values
    total = ordered.numel()
    gamma, ema = 1.0, 0.0
    while True:
        threshold = torch.tensor(gamma, dtype=abs_g.dtype, device=abs_g.device) * g_max
        above = total - int(
            torch.searchsorted(ordered, threshold.reshape(1), right=True)
        )
        ema = momentum * ema + (1 - momentum) * above / total
        if ema > target:
            return min(max(gamma + step, gamma_min), 1.0)
        gamma -= step


def expected_sr_error(g: Tensor, c: Tensor, bits: int) -> Tensor:
    """Expected ``sum (g_q - g)^2`` of stochastic rounding with clip ``c``.

    An element inside ``[-c, c]`` at fractional position ``f`` between two
    levels ``scale`` apart has variance ``f (1 - f) scale^2``; a clipped
    element contributes ``(|g| - c)^2``.

    Args:
        g (Tensor): The gradient.
        c (Tensor): Clip value (positive scalar tensor).
        bits (int): Bit-width.

    Returns:
        Tensor: The expected squared error (scalar).
    """
    scale = 2 * c / (2**bits - 2)
    abs_g = g.abs()
    position = (torch.clamp(g, -c, c) + c) / scale
    frac = position - position.floor()
    inside = (frac * (1 - frac)).sum() * scale**2
    return inside + (abs_g - c).clamp_min(0).pow(2).sum()


@MODELS.register_module()
class LBTGradQuantizer(nn.Module):
    """Quantizer of the error backpropagated into a layer (identity forward).

    Args:
        bits (int): Gradient bit-width, 2..8. Defaults to 4.
        interval (str): ``'lbt'`` (adaptive, the LBT controller), ``'fixed'``
            (constant ``gamma``; 1.0 = min-max) or ``'mse'`` (the expected-MSE
            minimising gamma of ``mse_grid`` per backward). Defaults to
            ``'lbt'``.
        gamma (float): The fixed gamma of ``'fixed'`` (in (0, 1]); ignored
            by the other intervals. Defaults to 1.0.
        seed (int): Seed of the stochastic rounding. Defaults to 0.
        c_large (float): LBT target constant (target clipped fraction
            ``c_large / (2^b - 1)``). Defaults to 1e-3.
        step (float): LBT gamma step. Defaults to 1e-3.
        momentum (float): EMA momentum of the walk-down. Defaults to 0.999.
        gamma_min (float): Lower bound of the LBT gamma. Defaults to 1e-3.
        mse_grid (Sequence[float], optional): Candidate gammas of ``'mse'``
            (default: 1.0, 0.95, ..., 0.05).
    """

    # initialized from the gradients: a float or W/A checkpoint lacks it
    checkpoint_optional_state = True
    #: Marks a quantizer for the ``g`` slot (checked by the quantized layers).
    is_grad_quantizer = True

    def __init__(
        self,
        bits: int = 4,
        interval: str = 'lbt',
        gamma: float = 1.0,
        seed: int = 0,
        c_large: float = 1e-3,
        step: float = 1e-3,
        momentum: float = 0.999,
        gamma_min: float = 1e-3,
        mse_grid: Optional[Sequence[float]] = None,
    ) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
            raise ValueError(
                f'LBTGradQuantizer: bits must be an int in 2..8 (2^b - 1 '
                f'symmetric gradient levels), got {bits!r}'
            )
        if interval not in INTERVALS:
            raise ValueError(
                f'LBTGradQuantizer: interval must be one of {INTERVALS}, '
                f'got {interval!r}'
            )
        if not 0 < gamma <= 1:
            raise ValueError(
                f'LBTGradQuantizer: gamma must be in (0, 1] (clip = gamma * '
                f'max|g|), got {gamma!r}'
            )
        self.bits = bits
        self.interval = interval
        self.seed = int(seed)
        self.c_large = c_large
        self.step_size = step
        self.momentum = momentum
        self.gamma_min = gamma_min
        grid = mse_grid if mse_grid is not None else [1 - 0.05 * k for k in range(20)]
        self.mse_grid = tuple(float(v) for v in grid)
        #: Stream of the noise, set from the layer name by the transform.
        self.stream = 0
        #: When True, ``last_error`` holds (mse_all, mse_large) per backward.
        self.record_error = False
        self.last_error: Optional[Dict[str, float]] = None
        self.register_buffer('gamma', torch.tensor(float(gamma)))
        self.register_buffer(
            'initialized', torch.tensor(int(interval != 'lbt'), dtype=torch.uint8)
        )
        self.register_buffer('num_backward', torch.tensor(0, dtype=torch.int64))
        self.register_buffer('num_nonfinite', torch.tensor(0, dtype=torch.int64))
        self._generators: Dict[torch.device, torch.Generator] = {}
        self._count: Optional[int] = None
        self._ready: Optional[bool] = None
        self._handle = _register(self)

    def __setstate__(self, state) -> None:
        # a copy (copy.deepcopy, pickle) is another quantizer: its own handle
        super().__setstate__(state)
        self._handle = _register(self)

    def extra_repr(self) -> str:
        return f'bits={self.bits}, interval={self.interval!r}'

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = None
        self._ready = None

    @property
    def needs_init(self) -> bool:
        """bool: An LBT quantizer whose walk-down has not run yet."""
        if self._ready is None:
            self._ready = bool(self.initialized.item())
        return not self._ready

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_grad_enabled() or not x.requires_grad:
            return x
        return _identity_quantize_grad(x, self._handle)

    def _noise(self, g: Tensor) -> Tensor:
        if self._count is None:
            self._count = int(self.num_backward.item())
        generator = self._generators.get(g.device)
        if generator is None:
            generator = torch.Generator(device=g.device)
            self._generators[g.device] = generator
        mixed = (self.seed * 1_000_003 + self.stream * 7_919 + self._count) % 2**63
        generator.manual_seed(mixed)
        self._count += 1
        self.num_backward.fill_(self._count)
        return (
            torch.rand(g.shape, generator=generator, device=g.device, dtype=g.dtype)
            - 0.5
        )

    def quantize_backward(self, g: Tensor) -> Tensor:
        """Quantize the error ``g`` and update gamma (the backward pass).

        Args:
            g (Tensor): ``dL/dy`` at the layer output.

        Returns:
            Tensor: ``g_q``, or ``g`` itself when it holds NaN / inf.
        """
        if g.numel() == 0:
            return g
        abs_g = g.abs()
        g_max = abs_g.max()
        finite = torch.isfinite(g_max)
        noise = self._noise(g)
        if self.interval == 'lbt' and self.needs_init:
            if not bool(finite):
                self.num_nonfinite.add_(1)
                return g
            if not bool(g_max > 0):  # an all-zero error says nothing
                return g
            # as the original: this backward quantizes with the initial
            # gamma = 1, the walk-down sets the gamma of the next one
            self.gamma.fill_(1.0)
            g_q = self._quantize(g, abs_g, g_max, finite, noise, update=False)
            self.gamma.fill_(
                lbt_walk_down(
                    abs_g,
                    g_max,
                    lbt_target(self.bits, self.c_large),
                    self.step_size,
                    self.momentum,
                    self.gamma_min,
                )
            )
            self.initialized.fill_(1)
            self._ready = True
            return g_q
        if self.interval == 'mse':
            self._choose_mse_gamma(g, g_max, finite)
        return self._quantize(g, abs_g, g_max, finite, noise, self.interval == 'lbt')

    def _choose_mse_gamma(self, g: Tensor, g_max: Tensor, finite: Tensor) -> None:
        safe_max = torch.where(finite & (g_max > 0), g_max, torch.ones_like(g_max))
        errors = torch.stack(
            [
                expected_sr_error(g, gamma * safe_max, self.bits)
                for gamma in self.mse_grid
            ]
        )
        grid = torch.tensor(self.mse_grid, dtype=self.gamma.dtype, device=g.device)
        best = grid[errors.argmin()]
        self.gamma.copy_(torch.where(finite, best, self.gamma))

    def _quantize(
        self,
        g: Tensor,
        abs_g: Tensor,
        g_max: Tensor,
        finite: Tensor,
        noise: Tensor,
        update: bool,
    ) -> Tensor:
        c = self.gamma.to(g.dtype) * g_max
        usable = finite & (c > 0)
        safe_c = torch.where(usable, c, torch.ones_like(c))
        g_q = torch.where(usable, quantize_gradient(g, safe_c, self.bits, noise), g)
        self.num_nonfinite.add_((~finite).long())
        if update:
            r = clipped_fraction(abs_g, c)
            target = lbt_target(self.bits, self.c_large)
            new = torch.clamp(
                self.gamma + self.step_size * torch.sign(r - target),
                self.gamma_min,
                1.0,
            )
            informative = finite & (g_max > 0)
            self.gamma.copy_(torch.where(informative, new, self.gamma))
        if self.record_error:
            self.last_error = quantization_error(g, g_q)
        return g_q


def quantization_error(
    g: Tensor, g_q: Tensor, large_fraction: float = 1e-3
) -> Dict[str, float]:
    """MSE of the quantized gradient over all elements and over the large ones.

    Args:
        g (Tensor): The float gradient.
        g_q (Tensor): Its quantized value.
        large_fraction (float): The share of elements with the largest
            ``|g|`` counted as large (at least one). Defaults to 1e-3.

    Returns:
        dict: ``mse_all``, ``mse_large``.
    """
    diff = (g_q - g).flatten().float()
    k = max(1, int(round(large_fraction * g.numel())))
    top = g.abs().flatten().topk(k).indices
    return dict(
        mse_all=float(diff.pow(2).mean()), mse_large=float(diff[top].pow(2).mean())
    )


# The identity with the quantized backward is a pair of custom operators, so
# torch.compile keeps a quantized layer in its graph: dynamo and AOTAutograd
# see the operators, not their bodies, and the backward (data-dependent walk-
# down, Python counters, seeded generators) runs eagerly inside the compiled
# backward graph. The quantizer is found by an integer handle.
_QUANTIZERS: 'weakref.WeakValueDictionary[int, LBTGradQuantizer]' = (
    weakref.WeakValueDictionary()
)
_HANDLES = itertools.count()


def _register(quantizer: LBTGradQuantizer) -> int:
    """Give ``quantizer`` a new handle for the gradient operators."""
    handle = next(_HANDLES)
    _QUANTIZERS[handle] = quantizer
    return handle


@torch.library.custom_op('mmcompress::lbt_identity', mutates_args=())
def _identity_quantize_grad(x: Tensor, handle: int) -> Tensor:
    """Identity forward (a copy, not a view: layers followed by an in-place op,
    ReLU(inplace) after a conv without norm, may modify the output); the
    backward is the quantizer's ``quantize_backward``."""
    return x.clone()


@torch.library.custom_op('mmcompress::lbt_quantize_grad', mutates_args=())
def _quantize_grad(grad: Tensor, handle: int) -> Tensor:
    """``quantize_backward`` of the quantizer with this handle."""
    out = _QUANTIZERS[handle].quantize_backward(grad)
    return out.clone() if out is grad else out  # an operator may not alias


@_identity_quantize_grad.register_fake
def _(x: Tensor, handle: int) -> Tensor:
    return torch.empty_like(x)


@_quantize_grad.register_fake
def _(grad: Tensor, handle: int) -> Tensor:
    return torch.empty_like(grad)


def _setup_context(ctx, inputs, output) -> None:
    ctx.handle = inputs[1]
    ctx.quantizer = _QUANTIZERS[inputs[1]]  # alive until the backward


def _backward(ctx, grad: Tensor):
    return _quantize_grad(grad, ctx.handle), None


_identity_quantize_grad.register_autograd(_backward, setup_context=_setup_context)


def name_grad_streams(model: nn.Module) -> int:
    """Give every gradient quantizer of ``model`` its own noise stream, from
    the CRC32 of its module name (stable across runs and resumes).

    Args:
        model (nn.Module): The quantized model.

    Returns:
        int: The number of gradient quantizers.
    """
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, LBTGradQuantizer):
            module.stream = zlib.crc32(name.encode())
            count += 1
    return count
