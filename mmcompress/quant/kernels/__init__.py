"""Fused CPU kernels of the fake quantizers, built on first use.

:func:`fused_lsq_fake_quant` (LSQ) and :func:`fused_ewgs_quantize` (EWGS)
compute a quantizer's forward in one pass over the tensor and its backward
(input gradient and the per-channel gradients of the range parameters) in one
more pass, instead of the separate element-wise passes of the eager autograd
graph (``stats_cpu.cpp``: DAQ's and N2UQ's weight statistics). The C++
sources (``fake_quant_cpu.cpp``, ``daq_n2uq_cpu.cpp``, sharing
``fake_quant_cpu.h``, and ``stats_cpu.cpp``) are compiled with
``torch.utils.cpp_extension`` the first time it is needed (about 20-40 s;
cached under ``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``;
``tools/setup_env.sh`` builds it). On a machine where it cannot be built (no
C++ compiler, no ninja) a warning is shown once and the eager path is used.

Equality with the eager path (tested in ``tests/quant/test_fused_kernels.py``):
the output is the same bit for bit; so is the input gradient of LSQ, EWGS and
N2UQ (DAQ's is the eager soft-path gradient to a few float roundings: its
``exp`` is another implementation); the parameter gradients are the same sums
taken in another order (in double, then rounded).
"""

import hashlib
import os
import threading
from typing import Optional

import torch
from torch import Tensor

from mmcompress.utils.cpp_kernels import build_once

from ..functions import lsq_fake_quant

_HERE = os.path.dirname(__file__)
_SOURCES = [
    os.path.join(_HERE, name)
    for name in ('fake_quant_cpu.cpp', 'daq_n2uq_cpu.cpp', 'stats_cpu.cpp')
]
_HEADER = os.path.join(_HERE, 'fake_quant_cpu.h')
_LOCK = threading.Lock()
_STATE = {}  # 'ops': the loaded op namespace, or 'error': why it is not available
_FAKES_REGISTERED = []  # once per process


def _build():
    """Compile (or take from the cache) and load the extension; its ops."""
    from torch.utils import cpp_extension

    # the build is redone when a source or a flag changes: the header's
    # hash is passed as a flag
    with open(_HEADER, 'rb') as header:
        digest = hashlib.sha1(header.read()).hexdigest()[:16]
    cpp_extension.load(
        name='mmcompress_fake_quant_cpu',
        sources=_SOURCES,
        extra_cflags=[
            '-O3',
            '-ffp-contract=off',
            '-fno-trapping-math',
            f'-DMMC_HEADER_SHA1={digest}',
        ],
        is_python_module=False,
        verbose=False,
    )
    _register_fakes()
    return torch.ops.mmcompress_kernels


def load_kernels(warn: bool = True):
    """Build (first time) and load the fused kernels.

    Args:
        warn (bool): Warn (once per process) when it cannot be built.
            Defaults to True.

    Returns:
        The ``torch.ops.mmcompress_kernels`` namespace, or None when the
        kernels cannot be built on this machine (the reason is in
        :func:`kernel_error`).
    """
    return build_once(
        _STATE,
        _LOCK,
        _build,
        'fused quantizer kernels',
        'fused=True falls back to the eager quantizers (same values, slower).',
        warn,
    )


def _register_fakes() -> None:
    """Output shapes of the kernels, so ``torch.compile`` traces through them
    instead of breaking the graph."""
    if _FAKES_REGISTERED:
        return

    def like(*tensors):
        return tuple(torch.empty_like(t) for t in tensors)

    lib = 'mmcompress_kernels::'
    torch.library.register_fake(lib + 'lsq_forward')(lambda x, *args: like(x)[0])
    torch.library.register_fake(lib + 'lsq_backward')(
        lambda grad, x, step, *args: like(x, step)
    )
    torch.library.register_fake(lib + 'ewgs_forward')(lambda x, *args: like(x)[0])
    torch.library.register_fake(lib + 'ewgs_backward')(
        lambda grad, x, lower, upper, *args: like(x, lower, upper)
    )
    torch.library.register_fake(lib + 'daq_forward')(lambda x, *args: like(x)[0])
    torch.library.register_fake(lib + 'daq_backward')(
        lambda grad, x, lower, upper, step, *args: like(x, lower, step)
    )
    torch.library.register_fake(lib + 'n2uq_forward')(lambda x, *args: like(x)[0])
    torch.library.register_fake(lib + 'n2uq_backward')(
        lambda grad, x, bounds, scales, starts, widths, *args: like(
            x, scales, starts, widths
        )
    )
    torch.library.register_fake(lib + 'n2uq_weight_forward')(
        lambda x, *args: like(x)[0]
    )
    torch.library.register_fake(lib + 'n2uq_weight_backward')(
        lambda grad, x, *args: like(x)[0]
    )
    _FAKES_REGISTERED.append(True)


def check_fused_flag(fused, owner: str) -> None:
    """Refuse a ``fused`` argument that is not a bool.

    Args:
        fused: The value given.
        owner (str): The quantizer class name, for the message.

    Raises:
        TypeError: ``fused`` is not True or False.
    """
    if not isinstance(fused, bool):
        raise TypeError(
            f'{owner}: fused must be True (fused CPU kernel) or False (eager), '
            f'got {fused!r} ({type(fused).__name__})'
        )


def kernel_error() -> Optional[str]:
    """Why the fused kernels are not available (None when they loaded or were
    not tried yet).

    Returns:
        str | None: The build error.
    """
    return _STATE.get('error')


class FusedLSQFakeQuant(torch.autograd.Function):
    """:class:`~mmcompress.quant.functions.LSQFakeQuant` on the fused kernel.

    Saves ``x`` (not ``x / s`` and the levels), so the backward reads two
    tensors (``x`` and the incoming gradient) and writes one. A model that
    changes a quantized layer's input in place after the layer ran then gets
    autograd's "modified by an inplace operation" error at backward (the
    eager function saves a copy and has no such restriction).
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        step: Tensor,
        qmin: int,
        qmax: int,
        grad_factor: float,
        axis: int,
    ) -> Tensor:
        ops = _STATE['ops']
        flat_step = step.reshape(-1).contiguous()
        ctx.save_for_backward(x, flat_step)
        ctx.args = (qmin, qmax, axis, grad_factor, step.shape)
        return ops.lsq_forward(x, flat_step, qmin, qmax, axis)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, flat_step = ctx.saved_tensors
        qmin, qmax, axis, grad_factor, shape = ctx.args
        grad_x, grad_step = _STATE['ops'].lsq_backward(
            grad_output.contiguous(), x, flat_step, qmin, qmax, axis
        )
        return grad_x, grad_step.reshape(shape) * grad_factor, None, None, None, None


def fused_lsq_fake_quant(
    x: Tensor, step: Tensor, qmin: int, qmax: int, grad_factor: float
) -> Tensor:
    """:func:`~mmcompress.quant.functions.lsq_fake_quant` through the fused
    kernel where it applies: contiguous float32 / float64 CPU tensors with a
    step per tensor or per channel along one axis. Other inputs (another
    device or dtype, a non-contiguous ``x``), and machines where the kernel
    cannot be built, use the eager function.

    Args:
        x (Tensor): Input.
        step (Tensor): Step size, broadcastable against ``x`` (shape ``()``,
            all ones, or ``x``'s size along one axis and 1 elsewhere).
        qmin (int): Smallest integer level.
        qmax (int): Largest integer level.
        grad_factor (float): LSQ gradient scale of the step.

    Returns:
        Tensor: Fake-quantized ``x``.
    """
    axis = kernel_axis(x, step)
    if axis is None or load_kernels() is None:
        return lsq_fake_quant(x, step, qmin, qmax, grad_factor)
    return FusedLSQFakeQuant.apply(x, step, qmin, qmax, grad_factor, axis)


class FusedEWGSQuantize(torch.autograd.Function):
    """The forward and backward of :meth:`EWGSQuantizer.quantize
    <mmcompress.quant.quantizers.EWGSQuantizer.quantize>` (far clamp,
    normalization, EWGS discretizer, ``2 x_q - 1`` for weights) on the fused
    kernel. Saves ``x``; not twice differentiable (the EWGS Hessian estimate
    uses the eager path)."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        lower: Tensor,
        upper: Tensor,
        num_levels: int,
        delta: Tensor,
        weight: bool,
        axis: int,
    ) -> Tensor:
        flat = [t.reshape(-1).contiguous() for t in (lower, upper)]
        ctx.save_for_backward(x, *flat, delta)
        ctx.args = (num_levels, weight, axis, lower.shape)
        return _STATE['ops'].ewgs_forward(x, *flat, num_levels, weight, axis)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor):
        x, lower, upper, delta = ctx.saved_tensors
        num_levels, weight, axis, shape = ctx.args
        grad_x, grad_lower, grad_upper = _STATE['ops'].ewgs_backward(
            grad_output.contiguous(), x, lower, upper, delta, num_levels, weight, axis
        )
        return (
            grad_x,
            grad_lower.reshape(shape),
            grad_upper.reshape(shape),
        ) + (None,) * 4


def fused_ewgs_quantize(
    x: Tensor,
    lower: Tensor,
    upper: Tensor,
    num_levels: int,
    delta: Tensor,
    weight: bool,
) -> Optional[Tensor]:
    """EWGS quantization of ``x`` through the fused kernel, where it applies
    (as :func:`fused_lsq_fake_quant`).

    Args:
        x (Tensor): Input.
        lower (Tensor): Lower bound, broadcastable against ``x``, dtype of x.
        upper (Tensor): Upper bound, same shape as ``lower``.
        num_levels (int): Number of levels ``2^bits``.
        delta (Tensor): Scalar EWGS gradient-scaling factor (a tensor, so
            that ``torch.compile`` traces the buffer as a graph input).
        weight (bool): Weight role (output ``2 x_q - 1``) or activation
            (``x_q``).

    Returns:
        Tensor | None: The quantized ``x``, or None when the kernel does not
        apply (the caller then runs the eager path).
    """
    axis = kernel_axis(x, lower)
    if axis is None or load_kernels() is None:
        return None
    return FusedEWGSQuantize.apply(
        x, lower, upper, num_levels, delta.detach(), weight, axis
    )


def kernel_axis(x: Tensor, step: Tensor) -> Optional[int]:
    """The channel axis of ``step`` against ``x`` (0 for a single step), or
    None when the kernel does not apply."""
    if (
        x.device.type != 'cpu'
        or step.device.type != 'cpu'
        or x.dtype not in (torch.float32, torch.float64)
        or step.dtype != x.dtype
        or not x.is_contiguous()
        or x.dim() == 0
    ):
        return None
    if step.numel() == 1:
        return 0 if step.dim() <= x.dim() else None
    if step.dim() != x.dim():
        return None
    axes = [d for d in range(x.dim()) if step.shape[d] != 1]
    if len(axes) != 1 or step.shape[axes[0]] != x.shape[axes[0]]:
        return None
    return axes[0]
