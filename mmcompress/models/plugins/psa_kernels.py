"""Fused CPU kernels of PolarizedSelfAttention's full-resolution element-wise steps.

Two steps of the block touch every element of the ``(N, C, HW)`` input and are
pure element-wise products with reductions:

* :func:`psa_combine`: ``x * (a + b)`` with a per-channel ``a`` ``(N, C)`` and a
  per-position ``b`` ``(N, HW)`` (either may be None): the parallel block's
  ``Z_ch + Z_sp``, and each product of the sequential chain;
* :func:`psa_pool`: ``sum_HW(x * q)`` ``(N, C)``: the channel branch's
  softmax-weighted pooling.

In eager PyTorch each is several passes over the full tensor (the broadcast
sum, the product, and in the backward the two products and the two reductions
of the gradients); the C++ kernels (``psa_cpu.cpp``) read and write the full
tensors once per direction. They are compiled with ``torch.utils.cpp_extension``
the first time a training step needs them (20-45 s; cached under
``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). Where a kernel
does not apply (another device or dtype than float32 / float64 on CPU, a
non-contiguous input, tracing, scripting, ``torch.compile``, ONNX export, no
gradient needed) or cannot be built (a warning, once), the eager expressions
run. Values: products are rounded as the eager ones (the forward of
:func:`psa_combine` and the input gradients are the same bit for bit), sums are
taken in double and rounded once (tested against the eager path in
``tests/models/test_psa_kernels.py``).
"""

import os
import threading
from typing import Optional

import torch
from torch import Tensor

from mmcompress.utils.cpp_kernels import build_once

_SOURCE = os.path.join(os.path.dirname(__file__), 'psa_cpu.cpp')
_LOCK = threading.Lock()
_STATE = {}  # 'ops': the op namespace, or 'error': why it could not be built
_DTYPES = (torch.float32, torch.float64)


def _build():
    """Compile (or take from the cache) and load the extension; its ops."""
    from torch.utils import cpp_extension

    cpp_extension.load(
        name='mmcompress_psa_cpu',
        sources=[_SOURCE],
        extra_cflags=['-O3', '-ffp-contract=off'],
        is_python_module=False,
        verbose=False,
    )
    return torch.ops.mmcompress_psa


def load_psa_kernels(warn: bool = True):
    """Build (first time) and load the kernels.

    Args:
        warn (bool): Warn (once per process) when they cannot be built.
            Defaults to True.

    Returns:
        The ``torch.ops.mmcompress_psa`` namespace, or None when the kernels
        cannot be built on this machine (the reason: :func:`psa_kernel_error`).
    """
    return build_once(
        _STATE,
        _LOCK,
        _build,
        'fused PolarizedSelfAttention kernels',
        'PSA runs its eager element-wise steps (same values, slower).',
        warn,
    )


def psa_kernel_error() -> Optional[str]:
    """Why the kernels are not available (None when loaded or not tried).

    Returns:
        str | None: The build error.
    """
    return _STATE.get('error')


def _kernel_applies(x: Tensor, *others: Optional[Tensor]) -> bool:
    """Whether the fused kernels may run on these tensors here."""
    tensors = [x] + [t for t in others if t is not None]
    return (
        torch.is_grad_enabled()
        and any(t.requires_grad for t in tensors)
        and x.is_contiguous()
        and all(t.device.type == 'cpu' and t.dtype == x.dtype for t in tensors)
        and x.dtype in _DTYPES
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and not torch.onnx.is_in_onnx_export()
        and load_psa_kernels() is not None
    )


class _Combine(torch.autograd.Function):
    """``x * (a + b)`` on the fused kernel (``a``/``b`` may be None)."""

    @staticmethod
    def forward(ctx, x: Tensor, a: Optional[Tensor], b: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, a, b)
        return _STATE['ops'].combine_forward(x, a, b)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, b = ctx.saved_tensors
        grad_x, grad_a, grad_b = _STATE['ops'].combine_backward(
            grad.contiguous(), x, a, b
        )
        return (
            grad_x if ctx.needs_input_grad[0] else None,
            grad_a if ctx.needs_input_grad[1] else None,
            grad_b if ctx.needs_input_grad[2] else None,
        )


class _Pool(torch.autograd.Function):
    """``sum_HW(x * q)`` on the fused kernel."""

    @staticmethod
    def forward(ctx, x: Tensor, q: Tensor) -> Tensor:
        ctx.save_for_backward(x, q)
        return _STATE['ops'].pool_forward(x, q)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, q = ctx.saved_tensors
        grad_x, grad_q = _STATE['ops'].pool_backward(grad.contiguous(), x, q)
        return (
            grad_x if ctx.needs_input_grad[0] else None,
            grad_q if ctx.needs_input_grad[1] else None,
        )


def psa_combine(
    x: Tensor, a: Optional[Tensor], b: Optional[Tensor], fused: bool = True
) -> Tensor:
    """``x * (a + b)`` for ``x`` ``(N, C, HW)``, ``a`` ``(N, C)``, ``b``
    ``(N, HW)``; a missing ``a`` or ``b`` counts as zero (not both).

    Args:
        x (Tensor): The input, ``(N, C, HW)``.
        a (Tensor, optional): Per-channel factor ``(N, C)``.
        b (Tensor, optional): Per-position factor ``(N, HW)``.
        fused (bool): Use the fused kernel where it applies. Defaults to True.

    Returns:
        Tensor: ``(N, C, HW)``.
    """
    if fused and _kernel_applies(x, a, b):
        a = None if a is None else a.contiguous()
        b = None if b is None else b.contiguous()
        return _Combine.apply(x, a, b)
    if b is None:
        return x * a.unsqueeze(2)
    if a is None:
        return x * b.unsqueeze(1)
    return x * (a.unsqueeze(2) + b.unsqueeze(1))


def psa_pool(x: Tensor, q: Tensor, fused: bool = True) -> Tensor:
    """``sum_HW(x * q)`` ``(N, C)`` for ``x`` ``(N, C, HW)``, ``q`` ``(N, HW)``.

    Args:
        x (Tensor): The input, ``(N, C, HW)``.
        q (Tensor): Per-position weights ``(N, HW)``.
        fused (bool): Use the fused kernel where it applies. Defaults to True.

    Returns:
        Tensor: ``(N, C)``.
    """
    if fused and _kernel_applies(x, q):
        return _Pool.apply(x, q.contiguous())
    return (x * q.unsqueeze(1)).sum(dim=2)
