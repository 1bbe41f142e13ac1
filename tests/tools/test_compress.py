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

from ..e2e.runs import load_script

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
    return load_script('tools', 'compress.py')


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
        ['float_test', 'qat', 'qat_test', 'export', 'onnx_test', 'speed'], 1
    ):
        assert f'[compress {index}/6] {stage}: running' in out
    assert '| float (PyTorch) |' in table and '| int8 (onnxruntime) |' in table
    summary = json.loads((work / 'summary.json').read_text())
    for stage in ('float_test', 'qat_test', 'onnx_test'):
        assert 0 <= summary[stage]['metrics']['accuracy/top1'] <= 100
    assert osp.getsize(summary['export']['onnx']) == summary['export']['bytes']
    # speed: the FP32 graph of the float model, both timed, sizes tabulated
    speed = summary['speed']
    assert osp.getsize(speed['fp32_onnx']) == speed['fp32_bytes']
    assert speed['fp32_ms'] > 0 and speed['int8_ms'] > 0
    assert (speed['shape'], speed['runs'], speed['threads']) == ([1, 1, 28, 28], 30, 1)
    ratio = speed['fp32_ms'] / speed['int8_ms']
    assert f'| {speed["fp32_ms"]:.3f} | {speed["int8_ms"]:.3f} | {ratio:.2f}x' in table
    assert 'Load average (1/5/15 min): before ' in table
    # the QAT stage's checkpoint evaluated again gives the table's value
    qat_cfg = Config.fromfile(str(work / 'qat' / 'config.py'))
    again = tool._test(qat_cfg, summary['qat']['checkpoint'], str(tmp_path / 't'))
    assert again == summary['qat_test']['metrics']
    # resume: every stage is skipped, the same table
    assert tool.main(argv) == table
    out = capsys.readouterr().out
    assert out.count('done, skipped') == 6


def _float_checkpoint(tmp_path, config=CONFIG, name='float.pth'):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(config).model)
    checkpoint = tmp_path / name
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    return checkpoint


def _run(tool, tmp_path, recipe, *extra):
    checkpoint = _float_checkpoint(tmp_path)
    work = tmp_path / 'work'
    argv = [CONFIG, str(checkpoint), '--recipe', recipe, '--work-dir', str(work)]
    argv += ['--shape', '1', '1', '28', '28', *extra, '--cfg-options', *SMALL]
    table = tool.main(argv)
    return table, json.loads((work / 'summary.json').read_text()), work


def _onnx_metrics(tmp_path, capsys, config, onnx):
    """tools/test_onnx.py's printed metrics (the stock evaluation of the file)."""
    module = load_script('tools', 'test_onnx.py')
    capsys.readouterr()
    module.main([str(config), onnx, '--work-dir', str(tmp_path / 'o')])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_ptq_int8_recipe_matches_stock_evaluations(tmp_path, capsys):
    tool = _compress()
    table, summary, work = _run(
        tool, tmp_path, 'ptq-int8', '--qat-options', 'ptq.num_images=64'
    )
    out = capsys.readouterr().out
    for index, stage in enumerate(
        ['float_test', 'ptq', 'ptq_test', 'export', 'onnx_test', 'speed'], 1
    ):
        assert f'[compress {index}/6] {stage}: running' in out
    assert '| PTQ (PyTorch) |' in table
    config = work / 'ptq' / 'config.py'
    cfg = Config.fromfile(str(config))
    assert cfg.model.type == 'QuantizedModel' and cfg.ptq.num_images == 64
    state = torch.load(summary['ptq']['checkpoint'], weights_only=True)['state_dict']
    steps = [k for k in state if k.endswith('act_quantizer.step')]
    assert steps and all(float(state[k]) > 0 for k in steps)  # calibrated
    again = tool._test(cfg, summary['ptq']['checkpoint'], str(tmp_path / 't'))
    assert again == summary['ptq_test']['metrics']
    onnx = _onnx_metrics(tmp_path, capsys, config, summary['export']['onnx'])
    assert onnx == summary['onnx_test']['metrics']


@pytest.mark.slow
def test_qat_w4a4_kd_recipe_trains_the_student_with_the_teacher(tmp_path, capsys):
    teacher_cfg = CONFIG  # a float model of the student's architecture: small
    teacher = _float_checkpoint(tmp_path, teacher_cfg, 'teacher.pth')
    tool = _compress()
    table, summary, work = _run(
        tool, tmp_path, 'qat-w4a4-kd', '--teacher', teacher_cfg, str(teacher)
    )
    assert '| QAT + KD (PyTorch) |' in table
    trained = Config.fromfile(str(work / 'kd_qat' / 'train_config.py'))
    assert trained.model.type == 'DistillModel'
    assert trained.model.teacher.checkpoint == str(teacher)
    assert trained.model.distill.kd.loss.type == 'VanillaKDLoss'
    config = Config.fromfile(str(work / 'kd_qat' / 'config.py'))
    assert config.model.type == 'QuantizedModel'
    assert config.model.quant.w.bits == 4
    checkpoint = summary['kd_qat']['checkpoint']
    assert checkpoint.endswith('epoch_1_student.pth')
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    assert not any(k.startswith(('student.', 'distill_losses.')) for k in state)
    again = tool._test(config, checkpoint, str(tmp_path / 't'))
    assert again == summary['qat_test']['metrics']


@pytest.mark.slow
def test_mixed_recipe_allocates_within_the_bops_budget(tmp_path, capsys):
    from mmcompress.quant.layers import QuantLayerMixin
    from mmcompress.quant.mixed_precision import layer_bops, quantized_layer_names

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(CONFIG).model)
    quant = dict(
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
    )
    layers = quantized_layer_names(model, quant)
    bops = layer_bops(model, torch.zeros(1, 1, 28, 28), layers, [8, 4])
    budget = sum(t[8] + t[4] for t in bops.values()) / 2  # between W4A4 and W8A8
    tool = _compress()
    table, summary, work = _run(tool, tmp_path, 'mixed', '--gbops', f'{budget}')
    allocation = summary['allocate']['allocation']
    assert sorted(allocation) == sorted(layers)
    assert set(allocation.values()) == {'4', '8'}
    used = sum(bops[n][int(b)] for n, b in allocation.items())
    assert used <= budget and used == pytest.approx(
        summary['allocate']['cost']['gbops']
    )
    assert 'of --gbops' in table
    # the allocation is the QAT config's layer_overrides, which build the model
    cfg = Config.fromfile(str(work / 'qat' / 'config.py'))
    narrowed = sorted(n for n, b in allocation.items() if b == '4')
    assert sorted(cfg.model.quant.layer_overrides) == narrowed
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        built = MODELS.build(cfg.model)
    for name in layers:
        layer = built.get_submodule(name)
        assert isinstance(layer, QuantLayerMixin)
        assert layer.weight_quantizer.bits == int(allocation[name])
    latency = summary['latency']['ms']
    assert all(t['4'] == t['8'] > 0 and t['float'] > 0 for t in latency.values())
    again = tool._test(cfg, summary['qat']['checkpoint'], str(tmp_path / 't'))
    assert again == summary['qat_test']['metrics']
