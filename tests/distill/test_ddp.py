"""2-process DDP (gloo, CPU) without find_unused_parameters."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.e2e.runs import free_port

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier  # noqa: E402

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_two_process_gloo_ddp(tmp_path):
    torch.manual_seed(1)
    teacher = ToyClassifier(widths=(16, 32))
    teacher_path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict()}, teacher_path)
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=f'{ROOT}{os.pathsep}' + os.environ.get('PYTHONPATH', ''),
    )
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'torch.distributed.run',
            '--nproc_per_node',
            '2',
            '--master_port',
            str(free_port()),
            str(Path(__file__).parent / 'ddp_toy_run.py'),
            str(tmp_path),
            str(teacher_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    assert ranks[0]['wrapper'] == 'MMDistributedDataParallel'
    # gradients were synchronised: both ranks hold the same parameters
    # (student and adapters; BN buffers are per rank without SyncBN)
    assert any(k.startswith('adapters.') for k in ranks[0]['params'])
    for key, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][key]), key
    # the teacher did not move on either rank
    for rank in ranks:
        for key, value in teacher.state_dict().items():
            assert torch.equal(rank['teacher'][key], value), key
    assert (tmp_path / 'epoch_2_student.pth').exists()
