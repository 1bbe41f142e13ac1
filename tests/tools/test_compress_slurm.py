"""tools/slurm_train.sh and tools/slurm_test.sh call srun in the OpenMMLab
form: the partition, job name and process counts from the arguments and
GPUS / GPUS_PER_NODE / CPUS_PER_TASK / SRUN_ARGS, then the repository's
train.py / test.py with ``--launcher=slurm`` and the remaining arguments.
A stand-in ``srun`` on PATH records its arguments."""

import os
import os.path as osp
import subprocess

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(tmp_path, script, args, **env):
    fake = tmp_path / 'bin'
    fake.mkdir()
    record = tmp_path / 'srun_args'
    (fake / 'srun').write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    (fake / 'srun').chmod(0o755)
    environment = dict(os.environ, PATH=f'{fake}:{os.environ["PATH"]}', **env)
    subprocess.run(
        ['bash', osp.join(REPO, 'tools', script), *args],
        env=environment,
        check=True,
        capture_output=True,
    )
    return record.read_text().splitlines()


def test_slurm_train_calls_srun_with_train_py(tmp_path):
    argv = _run(
        tmp_path,
        'slurm_train.sh',
        ['part', 'job', 'cfg.py', 'work', '--cfg-options', 'a=1'],
        GPUS='16',
        GPUS_PER_NODE='4',
        SRUN_ARGS='--quotatype=auto',
    )
    assert argv[:2] == ['-p', 'part']
    for option in (
        '--job-name=job',
        '--gres=gpu:4',
        '--ntasks=16',
        '--ntasks-per-node=4',
        '--cpus-per-task=5',
        '--kill-on-bad-exit=1',
        '--quotatype=auto',
    ):
        assert option in argv
    command = argv[argv.index('--quotatype=auto') + 1 :]
    assert command[1:3] == ['-u', osp.join(REPO, 'tools', 'train.py')]
    assert command[3:] == [
        'cfg.py',
        '--work-dir=work',
        '--launcher=slurm',
        '--cfg-options',
        'a=1',
    ]


def test_slurm_test_calls_srun_with_test_py(tmp_path):
    argv = _run(tmp_path, 'slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth'])
    assert '--ntasks=8' in argv and '--gres=gpu:8' in argv
    command = argv[argv.index('--kill-on-bad-exit=1') + 1 :]
    assert command[1:] == [
        '-u',
        osp.join(REPO, 'tools', 'test.py'),
        'cfg.py',
        'ckpt.pth',
        '--launcher=slurm',
    ]
