"""LBT gammas are averaged across ranks after each iteration (2 gloo processes)."""

import os
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn as nn

from mmcompress.quant.grad import LBTGradQuantizer, LBTIntervalInitHook
from tests.e2e.runs import free_port


def _backward(q, g):
    x = torch.zeros_like(g, requires_grad=True)
    q(x).backward(g)


def _gammas(rank, sync):
    """One iteration on this rank: local gammas, and those after the hook."""
    model = nn.ModuleDict(
        dict(
            a=LBTGradQuantizer(bits=4),
            b=LBTGradQuantizer(bits=4),
            fixed=LBTGradQuantizer(bits=4, interval='fixed', gamma=0.5),
        )
    )
    runner = SimpleNamespace(model=model, logger=None)
    # rank 1's errors are heavier-tailed: its walk-down stops elsewhere
    torch.manual_seed(rank)
    g = torch.randn(5000) ** (1 + 2 * rank)
    _backward(model['a'], g)
    # b initialises on rank 0 only (all-zero errors on rank 1)
    _backward(model['b'], g if rank == 0 else torch.zeros(100))
    local = {k: float(q.gamma) for k, q in model.items()}
    LBTIntervalInitHook(sync_gamma=sync).after_train_iter(runner, 0)
    return dict(local=local, after=({k: float(q.gamma) for k, q in model.items()}))


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch_dist.init_process_group('gloo', rank=rank, world_size=2)
    result = {sync: _gammas(rank, sync) for sync in (True, False)}
    torch.save(result, os.path.join(out_dir, f'{rank}.pth'))
    torch_dist.destroy_process_group()


@pytest.mark.slow
def test_gamma_is_the_mean_over_initialised_ranks(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'{r}.pth') for r in (0, 1))
    local0, local1 = r0[True]['local'], r1[True]['local']
    # the ranks' own walk-downs ended at different gammas
    assert local0['a'] != local1['a']
    mean = (local0['a'] + local1['a']) / 2
    assert r0[True]['after']['a'] == pytest.approx(mean, abs=1e-7)
    assert r1[True]['after']['a'] == r0[True]['after']['a']
    # b is initialised on rank 0 only: both ranks take rank 0's gamma
    assert local1['b'] == 1.0 and local0['b'] < 1.0
    assert r0[True]['after']['b'] == r1[True]['after']['b'] == local0['b']
    # a fixed-interval quantizer has no controller to synchronise
    assert r0[True]['after']['fixed'] == r1[True]['after']['fixed'] == 0.5
    # sync_gamma=False keeps each rank's own gammas
    for r in (r0, r1):
        assert r[False]['after'] == r[False]['local'] == r[True]['local']
