"""Data-driven initialization is synchronised across ranks (2 gloo processes)."""

import os

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from mmcompress.quant import EWGSQuantizer, LSQQuantizer
from tests.e2e.runs import free_port


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch_dist.init_process_group('gloo', rank=rank, world_size=2)
    torch.manual_seed(0)
    lsq = LSQQuantizer(4)
    ewgs = EWGSQuantizer(4, role='activation')
    # rank 0 sees non-negative data, rank 1 negative values: the grid must be
    # signed on both ranks and the ranges averaged
    data = torch.rand(100) * (rank + 1) - rank * 0.5
    lsq(data)
    ewgs(data)
    torch.save(
        dict(
            step=lsq.step.detach(),
            signed=lsq.is_signed,
            upper=ewgs.upper.detach(),
            local_step=2 * data.abs().mean() / 7**0.5,
        ),
        os.path.join(out_dir, f'rank{rank}.pth'),
    )
    torch_dist.destroy_process_group()


@pytest.mark.slow
def test_initialization_is_averaged_across_ranks(tmp_path):
    port = free_port()
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth') for r in (0, 1))
    assert torch.equal(r0['step'], r1['step'])
    assert torch.equal(r0['upper'], r1['upper'])
    assert r0['signed'] and r1['signed']
    # signed 4-bit grid: qmax = 7 on both ranks; the step is the mean of the
    # two ranks' own initial steps
    assert torch.allclose(r0['step'], (r0['local_step'] + r1['local_step']) / 2)
