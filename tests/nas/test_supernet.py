"""NB201 weight-sharing supernet: single-path forward, sharing, branches, training."""

import numpy as np
import pytest
import torch

from mmcompress.nas import NB201Space, TinyNetwork
from mmcompress.nas.supernet import (
    NB201Supernet,
    SuperCell,
    branch_of,
    cost_groups,
    evaluate_subnet,
    train_supernet,
)

ARCH = (3, 1, 2, 0, 4, 3)


def _tiny_name(name, arch, branch=0):
    """The ``TinyNetwork(arch)`` name of supernet tensor ``name``; None when the
    tensor is off the path of ``arch`` (another op, another branch)."""
    if '.branches.' not in name:
        return name
    cell, rest = name.split('.branches.')
    b, e, op, tail = rest.split('.', 3)
    if int(b) == branch and int(op) == arch[int(e)]:
        return f'{cell}.edges.{e}.{tail}'
    return None


def _subnet_weights(net, arch, branch=0):
    """State dict of ``TinyNetwork(arch)`` taken from the supernet's path."""
    items = net.state_dict().items()
    return {
        _tiny_name(k, arch, branch): v for k, v in items if _tiny_name(k, arch, branch)
    }


def test_single_path_equals_the_stand_alone_network(deterministic):
    net = NB201Supernet(C=4, N=1, in_channels=1).eval()
    tiny = TinyNetwork(ARCH, C=4, N=1, in_channels=1).eval()
    tiny.load_state_dict(_subnet_weights(net, ARCH))
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(net(x, ARCH), tiny(x), atol=1e-6)


def test_archs_share_op_weights_and_only_the_path_gets_gradients():
    net = NB201Supernet(C=4, N=1, in_channels=1)
    net(torch.randn(2, 1, 16, 16), ARCH).sum().backward()
    cell = net.cells[0]
    for e, op in enumerate(ARCH):
        for o, module in enumerate(cell.branches[0][e]):
            for p in module.parameters():
                assert (p.grad is not None) == (o == op)
    # another arch with nor_conv_3x3 on edge 0 uses the very same parameters
    other = (3, 0, 0, 0, 3, 0)
    w = cell.branches[0][0][3][1].weight
    before = w.grad.clone()
    net(torch.randn(2, 1, 16, 16), other).sum().backward()
    assert not torch.equal(w.grad, before)


def test_grow_branches_copies_the_coarser_branch():
    net = NB201Supernet(C=4, N=1, in_channels=1)
    cells = [c for c in net.cells if isinstance(c, SuperCell)]
    net.grow_branches(2)
    assert net.num_branches == 2
    w0 = cells[0].branches[0][0][3][1].weight
    w1 = cells[0].branches[1][0][3][1].weight
    assert w0 is not w1 and torch.equal(w0, w1)
    with torch.no_grad():
        w1.add_(1.0)
    net.grow_branches(4)  # new b copies old b * 2 // 4: 0, 0, 1, 1
    ws = [cells[0].branches[b][0][3][1].weight for b in range(4)]
    assert torch.equal(ws[0], w0) and torch.equal(ws[1], w0)
    assert torch.equal(ws[2], w1) and torch.equal(ws[3], w1)
    with pytest.raises(ValueError, match='2 < current 4 branches'):
        net.grow_branches(2)


def test_cost_groups_by_hand():
    space = NB201Space()
    cost = [
        9 * space.live_arch(a).count(3) + space.live_arch(a).count(2)
        for a in space.all_archs()
    ]
    assert np.allclose(cost_groups(2), [np.median(cost)])
    assert branch_of((0,) * 6, cost_groups(2)) == 0
    assert branch_of((3,) * 6, cost_groups(2)) == 1  # cost 54, the maximum
    assert branch_of((3,) * 6, cost_groups(1)) == 0


def test_standalone_sampler_trains_one_path_only(deterministic):
    net = NB201Supernet(C=4, N=1, in_channels=1)
    x, y = torch.randn(32, 1, 16, 16), torch.randint(0, 10, (32,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train_supernet(net, lambda rng: (x, y), 3, sample=lambda rng: ARCH)
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    path = {k for k in before if _tiny_name(k, ARCH)}
    # every changed tensor belongs to the trained path (BN counters included)
    assert changed and changed <= path


def test_progressive_training_grows_branches():
    net = NB201Supernet(C=4, N=1, in_channels=1)
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,))
    log = train_supernet(net, lambda rng: (x, y), 4, stages=(1, 2))
    assert net.num_branches == 2 and log[0][0] == 0


def test_evaluate_subnet_recalibrates_bn(deterministic):
    net = NB201Supernet(C=4, N=1, in_channels=1)
    calib = [torch.randn(8, 1, 16, 16) for _ in range(2)]
    x, y = torch.randn(10, 1, 16, 16), torch.randint(0, 10, (10,))
    acc = evaluate_subnet(net, ARCH, calib, x, y, bs=4)
    # stem BN running mean = average of the two batches' channel means
    conv = net.stem[0]
    with torch.no_grad():
        means = [conv(c).mean(dim=(0, 2, 3)) for c in calib]
    assert torch.allclose(net.stem[1].running_mean, (means[0] + means[1]) / 2)
    with torch.no_grad():
        expect = (net(x, ARCH).argmax(1) == y).float().mean() * 100
    assert acc == pytest.approx(float(expect))
