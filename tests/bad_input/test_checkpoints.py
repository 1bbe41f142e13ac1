"""Checkpoint mistakes: a checkpoint for another model, unreadable files, pickled code.

The configs are the real Fashion-MNIST ones (student, teacher, W4A4 LSQ QAT); the
checkpoints are made from the models those configs build (no training needed to
get the keys and shapes right).
"""

import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint, save_checkpoint

import mmcompress  # noqa: F401  (installs the policy)
from mmcompress.registry import MODELS
from mmcompress.utils.load_check import UnloadedWeightsError
from mmcompress.utils.safe_load import CorruptCheckpointError, UntrustedCheckpointError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUDENT = osp.join(REPO, 'configs/baselines/mmpretrain/fmnist_student.py')
TEACHER = osp.join(REPO, 'configs/baselines/mmpretrain/fmnist_teacher.py')
QAT = osp.join(REPO, 'configs/quant/mmpretrain/lsq_w4a4_fmnist.py')


def _build(config: str, **backbone):
    cfg = Config.fromfile(config)
    if backbone:
        cfg.model.backbone.update(backbone)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model)


def _checkpoint(model, path, prefix=''):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    save_checkpoint({'meta': {'epoch': 1, 'iter': 10}, 'state_dict': state}, str(path))
    return str(path)


def _runner(config: str, work_dir, **kwargs) -> Runner:
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.update(kwargs)
    return Runner.from_cfg(cfg)


@pytest.fixture(scope='module')
def kd_checkpoint(tmp_path_factory):
    """A DistillModel checkpoint's layout: the student under ``student.``."""
    folder = tmp_path_factory.mktemp('kd')
    return _checkpoint(_build(STUDENT), folder / 'epoch_1.pth', prefix='student.')


@pytest.mark.parametrize('tool', ['ours', 'stock mmpretrain'])
def test_test_tool_on_kd_checkpoint_with_student_config(kd_checkpoint, tool, tmp_path):
    """tools/test.py given a KD checkpoint and the student config (random weights).

    Message: holds the model under `student.`: it is a DistillModel (KD) checkpoint
    """
    from mmcompress.testing import stock_tool

    script = (
        osp.join(REPO, 'tools', 'test.py')
        if tool == 'ours'
        else stock_tool('mmpretrain', 'test')
    )
    proc = subprocess.run(
        [
            sys.executable,
            script,
            STUDENT,
            kd_checkpoint,
            '--work-dir',
            str(tmp_path),
            '--cfg-options',
            'test_dataloader.dataset.subset_size=20',
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(__import__('os').environ, OMP_NUM_THREADS='1'),
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert 'UnloadedWeightsError' in proc.stderr
    assert 'missing from the checkpoint: backbone.*, head.*' in proc.stderr
    assert (
        'The checkpoint holds the model under `student.`: it is a '
        'DistillModel (KD) checkpoint'
    ) in proc.stderr
    assert osp.splitext(kd_checkpoint)[0] + '_student.pth' in proc.stderr
    assert 'accuracy/top1' not in proc.stdout


def test_resume_kd_checkpoint_with_student_config(kd_checkpoint, tmp_path):
    """--resume of a KD checkpoint with the student config ("resumed", no weights).

    Message: missing from the checkpoint: backbone.*, head.*
    """
    runner = _runner(STUDENT, tmp_path, load_from=kd_checkpoint, resume=True)
    with pytest.raises(
        UnloadedWeightsError,
        match=r'missing from the checkpoint: backbone\.\*, '
        r'head\.\*.*under `student\.`',
    ):
        runner.load_or_resume()


def test_qat_load_from_teacher_checkpoint(tmp_path):
    """QAT load_from given the teacher's checkpoint instead of the float student's.

    Message: layer1.0.conv1.weight (checkpoint (16, 16, 3, 3), model (8, 8, 3, 3))
    """
    teacher = _checkpoint(_build(TEACHER), tmp_path / 'teacher.pth')
    runner = _runner(QAT, tmp_path / 'w', load_from=teacher)
    with pytest.raises(UnloadedWeightsError) as err:
        runner.load_or_resume()
    msg = str(err.value)
    assert (
        'shape differs: backbone.layer1.0.conv1.weight (checkpoint (16, 16, '
        '3, 3), model (8, 8, 3, 3))'
    ) in msg
    assert "another architecture (e.g. the teacher's" in msg


def test_qat_export_with_wrong_architecture_checkpoint(tmp_path):
    """Export (load_checkpoint into the QAT model) of a checkpoint trained on RGB input.

    Message: does not fit ImageClassifier
    """
    rgb = _checkpoint(_build(STUDENT, in_channels=3), tmp_path / 'rgb.pth')
    model = _build(QAT)
    with pytest.raises(
        UnloadedWeightsError,
        match=r'does not fit ImageClassifier: 1 of \d+ tensors .*'
        r'backbone\.conv1\.weight \(checkpoint \(8, 3, 3, 3\), '
        r'model \(8, 1, 3, 3\)\)',
    ):
        load_checkpoint(model, rgb, map_location='cpu', strict=False)


def test_random_bytes_checkpoint(tmp_path):
    """A downloaded "checkpoint" that is really an HTML page or random bytes.

    Message: is corrupt or not a checkpoint written by torch.save
    """
    path = tmp_path / 'model.pth'
    path.write_bytes(b'<!DOCTYPE html><html>404</html>')
    with pytest.raises(
        CorruptCheckpointError,
        match=f'Checkpoint {path} is corrupt or not a checkpoint '
        'written by torch.save: it is neither a zip archive',
    ):
        load_checkpoint(_build(STUDENT), str(path))


def test_empty_checkpoint_file(tmp_path):
    """An empty checkpoint file left by an interrupted save or download.

    Message: is empty (0 bytes)
    """
    path = tmp_path / 'epoch_1.pth'
    path.write_bytes(b'')
    with pytest.raises(
        CorruptCheckpointError, match=rf'Checkpoint {path} is empty \(0 bytes\)'
    ):
        load_checkpoint(_build(STUDENT), str(path))


def test_truncated_checkpoint(tmp_path):
    """A checkpoint cut short (disk full, partial copy).

    Message: failed finding central directory
    """
    good = _checkpoint(_build(STUDENT), tmp_path / 'good.pth')
    path = tmp_path / 'cut.pth'
    data = open(good, 'rb').read()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(
        CorruptCheckpointError,
        match=f'{path} is corrupt or not a checkpoint.*failed '
        'finding central directory',
    ):
        load_checkpoint(_build(STUDENT), str(path))


class _Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _every_loading_path(path: str, tmp_path):
    """Load ``path`` as a teacher, load_from, resume, export and stock
    init_model would; yields (name, callable)."""
    from mmpretrain.apis import init_model

    from mmcompress.distill.teacher import load_teacher_weights

    yield 'teacher', lambda: load_teacher_weights(_build(TEACHER), path)
    yield (
        'load_from',
        lambda: _runner(STUDENT, tmp_path / 'l', load_from=path).load_or_resume(),
    )
    yield (
        'resume',
        lambda: _runner(
            STUDENT, tmp_path / 'r', load_from=path, resume=True
        ).load_or_resume(),
    )
    yield 'export', lambda: load_checkpoint(_build(QAT), path, map_location='cpu')
    yield 'init_model', lambda: init_model(STUDENT, path, device='cpu')


def test_checkpoint_that_pickles_code(tmp_path):
    """A checkpoint that runs code when unpickled (teacher, load_from, resume...).

    Message: which could run arbitrary code
    """
    marker = str(tmp_path / 'pwned.txt')
    path = str(tmp_path / 'evil.pth')
    torch.save(
        {'state_dict': _build(STUDENT).state_dict(), 'meta': _Payload(marker)}, path
    )
    for name, load in _every_loading_path(path, tmp_path):
        with pytest.raises(
            UntrustedCheckpointError,
            match=r'it needs unpickling `builtins\.exec`, which '
            'could run arbitrary code',
        ):
            load()
        assert not osp.exists(marker), name
