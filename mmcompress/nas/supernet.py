"""One-shot weight-sharing supernet over the NB201 cell space.

Every cell edge of :class:`NB201Supernet` holds all five NB201 ops; a forward pass
runs one architecture (single path): the macro network of
:class:`~mmcompress.nas.nb201.TinyNetwork` with the chosen op on each edge and the
shared stem, reduction blocks and classifier. Two training methods:

* **uniform single path** (SPOS): each step trains one architecture drawn uniformly
  from the space;
* **candidate enhancement + progressive narrow branches** (1st place, CVPR 2021
  Lightweight NAS challenge track 1, arXiv 2108.05866), as read for the NB201 cell
  space: *candidate enhancement* builds the supernet's candidates wider than the
  stand-alone networks (``width_mult`` times the channels: a higher-capacity map of
  the same space); *progressive training* starts with every candidate sharing one
  set of op weights and, at each ``stages`` boundary, splits the op weights into
  more branches, each cloned from the branch it refines, so that each branch serves
  a narrower group of architectures (groups = quantiles of the live conv cost
  ``9 n_3x3 + n_1x1`` over the whole space). Less sharing late in training reduces
  the interference between candidates. The official code targets a ResNet channel
  space; this mapping to op choices is this package's.

Ranking: each sampled architecture inherits its weights (its branch), the BN
statistics are re-estimated on a few training batches, and the accuracy on held-out
images ranks it.
"""

import copy
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.utils.batch_norm import recompute_bn_statistics
from mmcompress.utils.checks import check_number

from .nb201 import ResNetBasicblock, make_op
from .space import NB201_EDGES, NB201_OPS, NB201Space, check_nb201_arch


class SuperCell(nn.Module):
    """An NB201 cell whose edges hold all five ops, in ``num_branches`` copies."""

    def __init__(self, channels: int):
        super().__init__()
        self.branches = nn.ModuleList([self._ops(channels)])

    @staticmethod
    def _ops(channels):
        return nn.ModuleList(
            nn.ModuleList(make_op(name, channels) for name in NB201_OPS)
            for _ in NB201_EDGES
        )

    def forward(self, x, arch: Sequence[int], branch: int = 0):
        edges = self.branches[branch]
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(
                sum(
                    edges[e][arch[e]](nodes[src])
                    for e, (dst, src) in enumerate(NB201_EDGES)
                    if dst == node
                )
            )
        return nodes[-1]


class NB201Supernet(nn.Module):
    """Weight-sharing NB201 supernet (TinyNetwork macro structure).

    Args:
        C (int): Stem channels. Defaults to 16.
        N (int): Cells per stage. Defaults to 5.
        num_classes (int): Classifier outputs. Defaults to 10.
        in_channels (int): Input channels. Defaults to 3.
    """

    def __init__(self, C=16, N=5, num_classes=10, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        cells, c_prev = [], C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicblock(c_prev, c))
            cells.extend(SuperCell(c) for _ in range(N))
            c_prev = c
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(c_prev, num_classes)

    @property
    def num_branches(self) -> int:
        """Current number of op-weight branches per cell."""
        cell = next(c for c in self.cells if isinstance(c, SuperCell))
        return len(cell.branches)

    def grow_branches(self, num: int):
        """Split the op weights into ``num`` branches; new branch ``b`` is a copy of
        old branch ``b * old // num`` (the coarser group that contains it)."""
        old = self.num_branches
        if num < old:
            raise ValueError(f'grow_branches: {num} < current {old} branches')
        for cell in self.cells:
            if isinstance(cell, SuperCell):
                cell.branches = nn.ModuleList(
                    copy.deepcopy(cell.branches[b * old // num]) for b in range(num)
                )

    def forward(self, x, arch: Sequence[int], branch: int = 0):
        """Logits of the subnet ``arch`` using op-weight branch ``branch``."""
        arch = check_nb201_arch(arch)
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, arch, branch) if isinstance(cell, SuperCell) else cell(x)
        return self.classifier(self.lastact(x).mean(dim=(2, 3)))


@lru_cache(maxsize=8)
def cost_groups(num: int) -> np.ndarray:
    """Upper bounds of the live-conv-cost groups: ``num`` quantiles of the cost
    ``9 n_3x3 + n_1x1`` of the live cell over all 15,625 NB201 architectures."""
    space = NB201Space()
    cost = [_cost(space, a) for a in space.all_archs()]
    return np.quantile(cost, np.arange(1, num) / num)


def _cost(space, arch) -> int:
    live = space.live_arch(arch)
    return 9 * live.count(3) + live.count(2)


def branch_of(arch, bounds: np.ndarray) -> int:
    """Branch (cost group) of ``arch`` for group upper bounds ``bounds``."""
    return int(np.searchsorted(bounds, _cost(NB201Space(), arch), side='left'))


def train_supernet(
    net: NB201Supernet,
    batches,
    steps: int,
    stages: Sequence[int] = (1,),
    lr: float = 0.05,
    seed: int = 0,
    sample=None,
) -> List[Tuple[int, float]]:
    """Single-path training: each step one uniformly drawn architecture.

    Args:
        net (NB201Supernet): The supernet (trained in place).
        batches (Callable[[np.random.Generator], tuple]): Returns one training
            batch ``(images, labels)``.
        steps (int): Optimisation steps.
        stages (Sequence[int]): Branch counts of equal-length training phases;
            ``(1,)`` is uniform single-path training with full sharing.
        lr (float): SGD (momentum 0.9, cosine) learning rate. Defaults to 0.05.
        seed (int): Seed of the architecture draws. Defaults to 0.
        sample (Callable[[np.random.Generator], tuple], optional): Architecture
            sampler; default uniform over the space. A sampler that always
            returns one architecture trains it stand-alone (the other ops get no
            gradient and no weight decay).

    Returns:
        list[tuple[int, float]]: ``(step, loss)`` every 50 steps.
    """
    check_number('steps', steps, 1, owner='train_supernet')
    rng, space = np.random.default_rng(seed), NB201Space()
    bounds, log = cost_groups(stages[0]), []
    net.grow_branches(stages[0])
    opt = torch.optim.SGD(net.parameters(), lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for step in range(steps):
        phase = min(step * len(stages) // steps, len(stages) - 1)
        if stages[phase] != net.num_branches:
            net.grow_branches(stages[phase])
            bounds = cost_groups(stages[phase])
            # new parameters: rebuild the optimiser, keep the schedule position
            opt = torch.optim.SGD(
                net.parameters(),
                sched.get_last_lr()[0],
                momentum=0.9,
                weight_decay=5e-4,
            )
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps - step)
        arch = space.sample(rng) if sample is None else sample(rng)
        x, y = batches(rng)
        loss = F.cross_entropy(net(x, arch, branch_of(arch, bounds)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            log.append((step, loss.item()))
    return log


@torch.no_grad()
def evaluate_subnet(net: NB201Supernet, arch, calib, images, labels, bs=500) -> float:
    """Accuracy (%) of ``arch`` with inherited weights after re-estimating the BN
    statistics on the batches ``calib`` (list of image tensors)."""
    bounds = cost_groups(net.num_branches)
    branch = branch_of(arch, bounds)
    recompute_bn_statistics(net, calib, lambda x: net(x, arch, branch))
    net.eval()
    correct = sum(
        int(
            (
                net(images[i : i + bs], arch, branch).argmax(1) == labels[i : i + bs]
            ).sum()
        )
        for i in range(0, len(images), bs)
    )
    return 100.0 * correct / len(images)
