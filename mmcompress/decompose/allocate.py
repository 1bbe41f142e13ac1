"""Per-layer choice of the decomposition (groups / ranks) under one global
FLOPs target.

Every layer has candidates ``(flops, error)``: keeping the layer (its own
FLOPs, error 0) and each decomposition the method allows (all ranks; for
``'group'`` every power-of-two group count dividing the input channels). The
choice minimises the **sum of the layers' relative weight reconstruction
errors** subject to the total FLOPs (decomposed layers + everything else)
being at most ``flops_ratio`` times the model's: a Lagrangian relaxation,
each layer taking ``argmin error + lam * flops``, with ``lam`` found by
bisection (the smallest ``lam`` that meets the target).
"""

from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from torch import nn

from .factorize import group_svd, group_tail_errors, mode_svd, tail_errors
from .flops import conv_flops

BISECTION_STEPS = 100


@dataclass
class Candidate:
    """One way to run a layer.

    Args:
        flops (int): FLOPs per sample.
        error (float): Relative squared weight error.
        ranks (tuple): ``()`` keeps the layer, else the ranks of
            :class:`~mmcompress.decompose.layers.DecomposedConv2d`.
    """

    flops: int
    error: float
    ranks: tuple


def _group_counts(in_channels: int) -> List[int]:
    counts, g = [], 1
    while g <= in_channels:
        if in_channels % g == 0:
            counts.append(g)
        g *= 2
    return counts


def layer_candidates(
    conv: nn.Conv2d, method: str, in_hw: Tuple[int, int], out_hw: Tuple[int, int]
) -> List[Candidate]:
    """Every candidate of one conv (the first one keeps it).

    Args:
        conv (nn.Conv2d): The layer.
        method (str): ``'group'``, ``'svd'`` or ``'tucker2'``.
        in_hw (tuple[int, int]): Input height, width (1x1 convs before a
            strided core run at this size).
        out_hw (tuple[int, int]): Output height, width.

    Returns:
        list[Candidate]: Candidates.
    """
    w = conv.weight.detach()
    o, i = w.shape[:2]
    k = conv.kernel_size
    total = float(w.double().pow(2).sum())
    keep = Candidate(conv_flops(i, o, k, out_hw), 0.0, ())
    if total == 0:
        return [keep]
    out = [keep]
    if method in ('group', 'svd'):
        for g in _group_counts(i) if method == 'group' else [1]:
            errors = group_tail_errors(group_svd(w, g)[1], total)
            for r in range(1, len(errors)):
                flops = conv_flops(i, g * r, k, out_hw, g) + conv_flops(
                    g * r, o, (1, 1), out_hw
                )
                ranks = (g, r) if method == 'group' else (r,)
                out.append(Candidate(flops, float(errors[r]), ranks))
        return out
    # Tucker-2: the truncated-HOSVD bound (error of mode-in + mode-out
    # truncation), exact at full rank; the layer itself is refined by HOOI
    err_out = tail_errors(mode_svd(w, 0)[1], total)
    err_in = tail_errors(mode_svd(w, 1)[1], total)
    area = k[0] * k[1]
    for r_in in range(1, len(err_in)):
        # the core (r_out, r_in * k * k) has rank <= min(r_out, r_in * k * k):
        # ranks beyond that (either way) add FLOPs and no accuracy
        for r_out in range(1, min(len(err_out), r_in * area + 1)):
            if r_in > r_out * area:
                continue
            flops = (
                conv_flops(i, r_in, (1, 1), in_hw)
                + conv_flops(r_in, r_out, k, out_hw)
                + conv_flops(r_out, o, (1, 1), out_hw)
            )
            error = float(err_in[r_in] + err_out[r_out])
            out.append(Candidate(flops, error, (r_in, r_out)))
    return out


def _pick(tables: dict, lam: float) -> Dict[str, int]:
    """Index of ``argmin error + lam * flops`` per layer."""
    return {
        name: int(torch.argmin(errors + lam * flops))
        for name, (flops, errors) in tables.items()
    }


def allocate(
    cands: Dict[str, List[Candidate]], other_flops: int, target: float
) -> Dict[str, Candidate]:
    """Choose one candidate per layer so that the total FLOPs <= target.

    Args:
        cands (dict): ``{layer: candidates}`` (:func:`layer_candidates`).
        other_flops (int): FLOPs of the layers that are not candidates.
        target (float): FLOPs budget of the whole model.

    Returns:
        dict: ``{layer: chosen Candidate}``.

    Raises:
        ValueError: Even the cheapest candidates exceed the target.
    """
    cheapest = other_flops + sum(min(c.flops for c in v) for v in cands.values())
    if cheapest > target:
        raise ValueError(
            f'FLOPs target {target:.0f} is below what the decomposition can '
            f'reach: {cheapest:.0f} (every selected layer at its lowest rank, '
            f'{other_flops:.0f} in layers that are not decomposed). Raise '
            'flops_ratio or select more layers'
        )

    tables = {
        name: (
            torch.tensor([c.flops for c in options], dtype=torch.float64),
            torch.tensor([c.error for c in options], dtype=torch.float64),
        )
        for name, options in cands.items()
    }

    def flops_of(index):
        return other_flops + sum(cands[n][i].flops for n, i in index.items())

    low, high = 0.0, 1.0 / max(target, 1.0)
    if flops_of(_pick(tables, low)) > target:
        while flops_of(_pick(tables, high)) > target:
            high *= 4
        for _ in range(BISECTION_STEPS):
            mid = (low + high) / 2
            if flops_of(_pick(tables, mid)) > target:
                low = mid
            else:
                high = mid
    else:
        high = low
    return {name: cands[name][i] for name, i in _pick(tables, high).items()}


def layer_errors(choice: Dict[str, Candidate]) -> float:
    """Sum of the chosen relative errors (the allocation's objective)."""
    return float(torch.tensor([c.error for c in choice.values()]).sum())
