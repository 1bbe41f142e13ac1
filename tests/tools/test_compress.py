"""tools/compress.py end to end on small Fashion-MNIST data: every stage of
the qat-int8 recipe runs, the table holds the float, PyTorch QAT and
onnxruntime int8 metrics, a second run resumes (skips every completed stage)
and a stage's result equals the stock evaluation of its output."""

import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'baselines', 'mmpretrain', 'fmnist_student.py')
SMALL = [
    'train_dataloader.dataset.subset_size=64',
    'train_dataloader.batch_size=32',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.dataset.subset_size=100',
    'test_dataloader.dataset.subset_size=100',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'test_dataloader.batch_size=50',
    'train_cfg.max_epochs=1',
    'randomness.seed=0',
]


def _compress():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        'compress_tool', osp.join(REPO, 'tools', 'compress.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_qat_int8_recipe_runs_resumes_and_tabulates(tmp_path, capsys):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(CONFIG).model)
    checkpoint = tmp_path / 'float.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    work = tmp_path / 'work'
    argv = [CONFIG, str(checkpoint), '--recipe', 'qat-int8', '--work-dir', str(work)]
    argv += ['--shape', '1', '1', '28', '28', '--cfg-options', *SMALL]
    tool = _compress()
    table = tool.main(argv)
    out = capsys.readouterr().out
    for index, stage in enumerate(
        ['float_test', 'qat', 'qat_test', 'export', 'onnx_test'], 1
    ):
        assert f'[compress {index}/5] {stage}: running' in out
    assert '| float (PyTorch) |' in table and '| int8 (onnxruntime) |' in table
    summary = json.loads((work / 'summary.json').read_text())
    for stage in ('float_test', 'qat_test', 'onnx_test'):
        assert 0 <= summary[stage]['metrics']['accuracy/top1'] <= 100
    assert osp.getsize(summary['export']['onnx']) == summary['export']['bytes']
    # the QAT stage's checkpoint evaluated again gives the table's value
    qat_cfg = Config.fromfile(str(work / 'qat' / 'config.py'))
    again = tool._test(qat_cfg, summary['qat']['checkpoint'], str(tmp_path / 't'))
    assert again == summary['qat_test']['metrics']
    # resume: every stage is skipped, the same table
    assert tool.main(argv) == table
    out = capsys.readouterr().out
    assert out.count('done, skipped') == 5
