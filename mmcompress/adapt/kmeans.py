"""Batched k-means (Lloyd) in torch, one clustering per group of samples.

BiSMAP uses k-means twice: to initialise the means of each class's Gaussian
mixture (``gmm.py``) and to find the target prototypes of the source
transferability map (``transfer.py``). Both run here, on CPU or GPU, with all
groups (classes) in one batched tensor: ``x`` is ``(C, N, D)`` with a boolean
``valid`` mask ``(C, N)`` for groups holding fewer than ``N`` samples.
"""

from typing import Optional

import torch


def pairwise_sq_dist(x: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, batched.

    Args:
        x (Tensor): ``(C, N, D)`` samples.
        centers (Tensor): ``(C, K, D)`` centres.

    Returns:
        Tensor: ``(C, N, K)`` distances, clamped at 0.
    """
    dist = (
        (x * x).sum(-1, keepdim=True)
        - 2 * torch.bmm(x, centers.transpose(1, 2))
        + (centers * centers).sum(-1).unsqueeze(1)
    )
    return dist.clamp_min_(0)


def _init_centers(
    x: torch.Tensor, valid: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """``k`` distinct valid samples per group, drawn uniformly (fewer: repeated)."""
    weights = valid.float() + 1e-12
    idx = torch.multinomial(
        weights.cpu(), k, replacement=False, generator=generator
    ).to(x.device)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])).clone()


def batched_kmeans(
    x: torch.Tensor,
    k: int,
    valid: Optional[torch.Tensor] = None,
    max_iters: int = 20,
    tol: float = 1e-4,
    n_init: int = 3,
    seed: int = 0,
) -> torch.Tensor:
    """Lloyd's k-means on every group of ``x`` at once.

    Each group is started ``n_init`` times from ``k`` random samples; the start
    with the lowest within-cluster squared distance is kept (the official code
    keeps the best of 20 random starts on [0, 1]-rescaled data, then iterates to
    convergence). A cluster that loses all its samples keeps its centre.

    Args:
        x (Tensor): ``(C, N, D)`` samples.
        k (int): Clusters per group.
        valid (Tensor, optional): ``(C, N)`` bool, False for padding. Every
            group needs at least ``k`` valid samples. None: all valid.
        max_iters (int): Most Lloyd iterations. Defaults to 20.
        tol (float): Stop when no centre moves more than ``tol`` times the
            data's scale (RMS norm). Defaults to 1e-4.
        n_init (int): Random starts. Defaults to 3.
        seed (int): Seed of the starts. Defaults to 0.

    Returns:
        Tensor: ``(C, k, D)`` centres.
    """
    num_groups, _, dim = x.shape
    if valid is None:
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    generator = torch.Generator().manual_seed(seed)
    validf = valid.to(x.dtype)
    scale = ((x * x).sum(-1) * validf).sum() / validf.sum().clamp_min(1)
    scale = scale.sqrt().clamp_min(1e-12)
    best, best_cost = None, None
    for _ in range(n_init):
        centers = _init_centers(x, valid, k, generator)
        for _ in range(max_iters):
            assign = pairwise_sq_dist(x, centers).argmin(-1)
            onehot = torch.nn.functional.one_hot(assign, k).to(x.dtype)
            onehot = onehot * validf.unsqueeze(-1)
            counts = onehot.sum(1)
            sums = torch.bmm(onehot.transpose(1, 2), x)
            new = torch.where(
                counts.unsqueeze(-1) > 0,
                sums / counts.clamp_min(1).unsqueeze(-1),
                centers,
            )
            shift = (new - centers).norm(dim=-1).max()
            centers = new
            if shift <= tol * scale:
                break
        cost = (pairwise_sq_dist(x, centers).min(-1).values * validf).sum(1)
        if best is None:
            best, best_cost = centers, cost
        else:
            better = cost < best_cost
            best = torch.where(better.view(num_groups, 1, 1), centers, best)
            best_cost = torch.minimum(cost, best_cost)
    return best.reshape(num_groups, k, dim)
