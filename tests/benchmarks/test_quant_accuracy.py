"""benchmarks/quant_accuracy.py's ``--fp-checkpoint``: QAT starts from exactly
the given float weights, a checkpoint of another architecture (or a missing
file) is refused with a message naming it, and results of different starts are
keyed apart in ``results.jsonl``."""

import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmpretrain.utils import register_all_modules

from mmcompress.utils.load_check import declared_optional

from ..e2e.runs import REPO, load_script

quant_accuracy = load_script('benchmarks', 'quant_accuracy.py')

TEACHER = osp.join(REPO, 'configs', 'baselines', 'mmpretrain', 'fmnist_teacher.py')


def _save_float_checkpoint(path, config, seed):
    """A float checkpoint of ``config``'s (float or quantized) model with
    weights drawn from ``seed``, saved as mmengine does (``state_dict``)."""
    register_all_modules(init_default_scope=True)
    model_cfg = Config.fromfile(config).model
    model_cfg = model_cfg.get('model', model_cfg)  # the float model of a QAT config
    model = MODELS.build(model_cfg)
    gen = torch.Generator().manual_seed(seed)
    state = {
        k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    torch.save(dict(state_dict=state, meta=dict()), path)
    return state


def test_fp_checkpoint_loads_exactly_its_weights(tmp_path):
    path = str(tmp_path / 'float.pth')
    state = _save_float_checkpoint(
        path, osp.join(quant_accuracy.CONFIG_DIR, 'fp32_finetune_fmnist.py'), seed=3
    )
    quant_accuracy.check_fp_checkpoint(
        path, ['fp32_finetune_fmnist', 'ewgs_w4a4_fmnist']
    )
    runner = quant_accuracy.build_runner(
        osp.join(quant_accuracy.CONFIG_DIR, 'ewgs_w4a4_fmnist.py'),
        str(tmp_path / 'run'),
        seed=0,
        epochs=1,
        subset=64,
        load_from=path,
    )
    model = runner.model.state_dict()
    assert not torch.equal(
        model['backbone.conv1.weight'], state['backbone.conv1.weight']
    )
    runner.load_or_resume()  # what Runner.train does before the first step
    model = runner.model.state_dict()
    assert set(state) < set(model)  # the quantized model adds its quantizers
    for key, value in state.items():
        assert torch.equal(model[key], value), key
    # only what the quantized model declares optional is not in the checkpoint
    assert all(declared_optional(runner.model, k) for k in set(model) - set(state))


def test_wrong_architecture_checkpoint_is_refused_naming_the_mismatch(tmp_path):
    path = str(tmp_path / 'teacher.pth')
    _save_float_checkpoint(path, TEACHER, seed=0)
    with pytest.raises(
        ValueError,
        match=r'--fp-checkpoint .*teacher\.pth does not match ewgs_w4a4_fmnist\.py'
        r'.*shape \(checkpoint vs model\) \[.backbone\.conv1\.weight: '
        r'\(16, 1, 3, 3\) vs \(8, 1, 3, 3\).*pass the float Fashion-MNIST student',
    ):
        quant_accuracy.check_fp_checkpoint(path, ['ewgs_w4a4_fmnist'])


def test_missing_checkpoint_is_refused_before_any_run(tmp_path):
    with pytest.raises(FileNotFoundError, match='--fp-checkpoint .*nope.pth does not'):
        quant_accuracy.main(
            ['--fp-checkpoint', str(tmp_path / 'nope.pth'), '--work-dir', str(tmp_path)]
        )
    assert not (tmp_path / 'results.jsonl').exists()


def test_results_of_other_starts_are_not_reported(tmp_path):
    path = str(tmp_path / 'float.pth')
    _save_float_checkpoint(
        path, osp.join(quant_accuracy.CONFIG_DIR, 'fp32_finetune_fmnist.py'), seed=0
    )
    start = f'{path}|epochs=1|subset=30000'
    rows = [
        dict(run='FP32_finetune', seed=0, seconds=9.0, **{'accuracy/top1': 50.0}),
        dict(
            run='FP32', seed=None, start=start, seconds=0.0, **{'accuracy/top1': 92.0}
        ),
        dict(run='ewgs_w4a4', seed=0, start=start, seconds=60.0, load=2.5)
        | {'accuracy/top1': 91.5},
        dict(run='ewgs_w4a4', seed=1, start=start.replace('30000', '10000'))
        | {'seconds': 20.0, 'accuracy/top1': 10.0},
    ]
    (tmp_path / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    out = tmp_path / 'table.md'
    quant_accuracy.main(
        ['--fp-checkpoint', path, '--work-dir', str(tmp_path), '--report-only']
        + ['--seeds', '0', '1', '--methods', 'ewgs', '--bits', '4']
        + ['--subset', '30000', '--out', str(out)]
    )
    table = out.read_text()
    assert '| FP32 | 92.00 | 0.00 | 92.00 | +0.00 | - |  |' in table
    assert '| FP32_finetune | not measured yet | | | | | |' in table
    assert '| ewgs_w4a4 | 91.50 | 0.00 | 91.50 | -0.50 | 60 | 2.5-2.5 |' in table
    assert f'--fp-checkpoint {path} --qat-epochs 1 --subset 30000`' in table


def test_default_start_reads_only_its_own_results_in_the_old_format(tmp_path):
    assert quant_accuracy.parse_args([]).work_dir == 'work_dirs/quant_accuracy'
    converged = quant_accuracy.parse_args(['--fp-checkpoint', 'a.pth'])
    assert converged.work_dir == 'work_dirs/quant_accuracy_converged'
    top1 = {'FP32': 76.0, 'FP32_finetune': 77.13, 'ewgs_w4a4': 76.66}
    rows = [
        dict(run=run, seed=0, seconds=1.0, **{'accuracy/top1': value})
        for run, value in top1.items()
    ]
    rows.append(rows[-1] | dict(start='a.pth|epochs=1|subset=10000', seed=1))
    (tmp_path / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    out = tmp_path / 'table.md'
    quant_accuracy.main(
        ['--work-dir', str(tmp_path), '--report-only', '--seeds', '0', '1']
        + ['--methods', 'ewgs', '--bits', '4', '--out', str(out)]
    )
    table = out.read_text()
    assert '| FP32 | 76.00 | 0.00 | 76.00 | -1.13 |\n' in table
    assert '| ewgs_w4a4 | 76.66 | 0.00 | 76.66 | -0.47 |\n' in table
    assert '--fp-seed 0 --fp-epochs 4 --qat-epochs 1 --subset 10000`' in table
