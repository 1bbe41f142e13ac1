"""Factorisations of a conv weight ``W (O, I, k, k)`` into the weights of the
decomposed layers, and their reconstruction errors.

* **filter-group approximation** (``'group'``, g groups, rank r per group):
  the input channels are cut into g contiguous groups, ``W = [W_1 ... W_g]``
  with ``W_j (O, I/g * k * k)``, so ``conv(x) = sum_j W_j x_j``. Each ``W_j``
  is replaced by its best rank-r approximation ``U_j S_j V_j`` (truncated
  SVD): ``V_j`` are the r filters of group j of a **group convolution**
  (``I -> g * r`` channels, ``groups=g``, kernel k, the conv's stride and
  padding) and ``[U_1 S_1 ... U_g S_g]`` is the **1x1 mixing** conv
  (``g * r -> O``); the singular values are split as ``sqrt(S)`` on both
  sides. Exact at full rank ``r = min(O, I/g * k * k)``; ``g = 1`` is the
  channel SVD below;
* **channel SVD** (``'svd'``, Zhang et al. 2016 style, data-free): the rank-r
  SVD of ``W`` as ``(O, I k k)``: a k x k conv ``I -> r`` and a 1x1 conv
  ``r -> O``;
* **Tucker-2** (``'tucker2'``, Kim et al. 2016): ``W ~= core x_0 U_out x_1
  U_in`` with ranks (r_in, r_out): 1x1 conv ``I -> r_in`` (``U_in^T``), k x k
  core ``r_in -> r_out``, 1x1 conv ``r_out -> O`` (``U_out``); initialised by
  HOSVD and refined by a few HOOI sweeps.

All errors are relative squared Frobenius errors ``|W - W'|^2 / |W|^2``.
"""

from typing import Tuple

import torch
from torch import Tensor

HOOI_SWEEPS = 5


def group_svd(weight: Tensor, groups: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-group SVD of a conv weight cut along its input channels.

    Args:
        weight (Tensor): ``(O, I, k, k)``; ``I`` divisible by ``groups``.
        groups (int): Number of input-channel groups.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``U (g, O, q)``, ``S (g, q)``,
        ``Vh (g, q, I/g * k * k)`` with ``q = min(O, I/g * k * k)``.
    """
    out_ch = weight.shape[0]
    mats = weight.reshape(out_ch, groups, -1).permute(1, 0, 2).double()
    return torch.linalg.svd(mats, full_matrices=False)


def group_tail_errors(singular: Tensor, total: float) -> Tensor:
    """Relative error of keeping the top r singular values of every group,
    for r = 0 .. q.

    Args:
        singular (Tensor): ``S (g, q)`` of :func:`group_svd`.
        total (float): ``|W|^2``.

    Returns:
        Tensor: ``(q + 1,)`` errors, index r = the rank kept.
    """
    energy = singular.pow(2).sum(dim=0)  # (q,)
    kept = torch.cat([energy.new_zeros(1), energy.cumsum(0)])
    return ((energy.sum() - kept) / total).clamp(min=0)


def group_factors(weight: Tensor, groups: int, rank: int) -> Tuple[Tensor, Tensor]:
    """Weights of the group conv and the 1x1 mixing conv.

    Args:
        weight (Tensor): ``(O, I, k, k)``.
        groups (int): Input-channel groups g.
        rank (int): Rank r per group (at most ``min(O, I/g * k * k)``).

    Returns:
        tuple[Tensor, Tensor]: ``(g * r, I/g, k, k)`` and ``(O, g * r, 1, 1)``.
    """
    out_ch, in_ch, kh, kw = weight.shape
    u, s, vh = group_svd(weight, groups)
    root = s[:, :rank].sqrt()
    first = (root.unsqueeze(-1) * vh[:, :rank]).reshape(
        groups * rank, in_ch // groups, kh, kw
    )
    mix = (u[:, :, :rank] * root.unsqueeze(1)).permute(1, 0, 2)
    mix = mix.reshape(out_ch, groups * rank, 1, 1)
    return first.to(weight.dtype), mix.to(weight.dtype)


def mode_svd(weight: Tensor, mode: int) -> Tuple[Tensor, Tensor]:
    """Left singular vectors and values of the mode-``mode`` unfolding.

    Args:
        weight (Tensor): ``(O, I, k, k)``.
        mode (int): 0 (output channels) or 1 (input channels).

    Returns:
        tuple[Tensor, Tensor]: ``U (C, C')`` and ``S (C',)``.
    """
    mat = weight.double().transpose(0, mode).reshape(weight.shape[mode], -1)
    u, s, _ = torch.linalg.svd(mat, full_matrices=False)
    return u, s


def _leading(weight: Tensor, mode: int, rank: int) -> Tensor:
    """``rank`` leading mode singular vectors, zero columns past the
    unfolding's rank (they multiply a zero core slice)."""
    u = mode_svd(weight, mode)[0][:, :rank]
    return torch.nn.functional.pad(u, (0, rank - u.shape[1]))


def tucker2_factors(
    weight: Tensor, rank_in: int, rank_out: int, sweeps: int = HOOI_SWEEPS
) -> Tuple[Tensor, Tensor, Tensor]:
    """Tucker-2 of a conv weight: HOSVD start, then ``sweeps`` HOOI sweeps.

    Args:
        weight (Tensor): ``(O, I, k, k)``.
        rank_in (int): Rank of the input-channel mode.
        rank_out (int): Rank of the output-channel mode.
        sweeps (int): HOOI refinement sweeps. Defaults to 5.

    Returns:
        tuple[Tensor, Tensor, Tensor]: 1x1 ``(r_in, I, 1, 1)``, core
        ``(r_out, r_in, k, k)``, 1x1 ``(O, r_out, 1, 1)``.
    """
    w = weight.double()
    u_out = _leading(w, 0, rank_out)
    u_in = _leading(w, 1, rank_in)
    for _ in range(sweeps):
        u_in = _leading(torch.einsum('oikl,or->rikl', w, u_out), 1, rank_in)
        u_out = _leading(torch.einsum('oikl,is->oskl', w, u_in), 0, rank_out)
    core = torch.einsum('oikl,or,is->rskl', w, u_out, u_in)
    first = u_in.t()[:, :, None, None]
    last = u_out[:, :, None, None]
    return tuple(t.contiguous().to(weight.dtype) for t in (first, core, last))


def tail_errors(singular: Tensor, total: float) -> Tensor:
    """Relative energy left out when keeping r = 0 .. C' singular values.

    Args:
        singular (Tensor): ``S`` of :func:`mode_svd`.
        total (float): ``|W|^2``.

    Returns:
        Tensor: ``(C' + 1,)``.
    """
    energy = singular.pow(2)
    kept = torch.cat([energy.new_zeros(1), energy.cumsum(0)])
    return ((energy.sum() - kept) / total).clamp(min=0)
