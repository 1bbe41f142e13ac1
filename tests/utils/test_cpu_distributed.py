"""The CPU distributed fix of mmcompress.utils.compat: mmengine's pytorch
launcher falls back to gloo without accelerators, and the process group is
torn down at exit (left to the interpreter's teardown, gloo aborted one
``dist_train.sh`` process in four after training had finished)."""

import atexit

import pytest
import torch
import torch.distributed as dist

import mmcompress  # noqa: F401  (installs the fix)
from mmcompress.utils import compat
from tests.e2e.runs import free_port


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='the fallback applies to machines without GPUs'
)
def test_pytorch_launcher_uses_gloo_and_destroys_it_at_exit(monkeypatch):
    # mmengine's init_dist calls this after choosing a multiprocessing start
    # method (a process-wide setting, which the test leaves alone)
    from mmengine.dist import utils as dist_utils

    registered = []
    monkeypatch.setattr(atexit, 'register', registered.append)
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    assert not dist.is_initialized()
    dist_utils._init_dist_pytorch('nccl')  # what dist_train.sh asks for
    try:
        assert dist.get_backend() == 'gloo'
        assert registered == [compat._destroy_process_group]
    finally:
        compat._destroy_process_group()
    assert not dist.is_initialized()
    compat._destroy_process_group()  # a second call (atexit) is harmless
