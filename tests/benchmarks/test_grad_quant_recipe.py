"""benchmarks/grad_quant.py's ``--recipe scratch``: the runs train from random
initialization with the float student's SGD schedule, the gradient rounding
noise seeded with the run seed, and results of different protocols are keyed
apart in ``results.jsonl``."""

import os.path as osp
import sys
import types

import pytest
from mmengine.config import Config

from ..e2e.runs import REPO, load_script

# grad_quant.py imports its sibling scripts (machine_load, quant_accuracy)
sys.path.insert(0, osp.join(REPO, 'benchmarks'))
grad_quant = load_script('benchmarks', 'grad_quant.py')
quant_accuracy = sys.modules['quant_accuracy']

SCHEDULE = Config.fromfile(
    osp.join(REPO, 'configs', '_base_', 'schedules', 'fmnist_sgd.py')
)


def _config(name):
    return osp.join(grad_quant.CONFIG_DIR, name + '.py')


@pytest.mark.parametrize(
    'name', ['lbt_w4a4g4_fmnist', 'lsq_w4a4_fmnist', 'fp32_finetune_fmnist']
)
def test_scratch_runner_has_the_student_schedule(tmp_path, name):
    options = grad_quant.recipe_options('scratch', _config(name), seed=3)
    runner = quant_accuracy.build_runner(
        _config(name), str(tmp_path), seed=3, epochs=2, subset=64, cfg_options=options
    )
    assert runner._load_from is None
    optimizer = runner.build_optim_wrapper(runner.cfg.optim_wrapper).optimizer
    assert type(optimizer).__name__ == 'SGD'
    group = optimizer.param_groups[0]
    sgd = SCHEDULE.optim_wrapper.optimizer
    assert (group['momentum'], group['nesterov']) == (sgd.momentum, sgd.nesterov)
    # warm-up over the first epoch, then the cosine cut to the run's 2 epochs
    warmup, cosine = runner.cfg.param_scheduler
    assert (warmup.type, warmup.end) == ('LinearLR', 1)
    assert (cosine.type, cosine.begin, cosine.end) == ('CosineAnnealingLR', 1, 2)
    grad_quantizers = [
        m for m in runner.model.modules() if isinstance(m, grad_quant.LBTGradQuantizer)
    ]
    if name.startswith('lbt'):
        assert grad_quantizers and all(q.seed == 3 for q in grad_quantizers)
    else:
        assert not grad_quantizers


def test_finetune_recipe_keeps_the_configs():
    config = _config('lbt_w4a4g4_fmnist')
    assert grad_quant.recipe_options('finetune', config, 1) is None


def test_results_are_keyed_by_protocol(tmp_path):
    path = str(tmp_path / 'results.jsonl')
    scratch = grad_quant._protocol(
        types.SimpleNamespace(recipe='scratch', epochs=3, subset=20000)
    )
    finetune = dict(scratch, recipe='finetune')
    grad_quant._append_result(path, scratch, '4/4/4 LBT', 0, 80.0, 1.0)
    grad_quant._append_result(path, finetune, '4/4/4 LBT', 0, 90.0, 1.0)
    assert grad_quant._load_results(path, scratch) == {('4/4/4 LBT', 0): 80.0}
    assert grad_quant._load_results(path, finetune) == {('4/4/4 LBT', 0): 90.0}
    assert grad_quant._load_results(path, dict(scratch, epochs=1)) == {}


@pytest.mark.parametrize(
    'name, interval, gamma',
    [
        ('lbt_minmax_w4a4g4_fmnist', 'fixed', 1.0),
        ('lbt_gamma08_w4a4g4_fmnist', 'fixed', 0.8),
        ('lbt_gamma06_w4a4g4_fmnist', 'fixed', 0.6),
        ('lbt_mse_w4a4g4_fmnist', 'mse', None),
    ],
)
def test_baseline_arms_quantize_gradients_with_their_interval(
    tmp_path, name, interval, gamma
):
    options = grad_quant.recipe_options('scratch', _config(name), seed=1)
    runner = quant_accuracy.build_runner(
        _config(name), str(tmp_path), seed=1, epochs=1, subset=64, cfg_options=options
    )
    quantizers = [
        m for m in runner.model.modules() if isinstance(m, grad_quant.LBTGradQuantizer)
    ]
    # every quantized layer of the LBT arm, 4 bits, no controller and no
    # skipped optimizer step
    lbt = quant_accuracy.build_runner(
        _config('lbt_w4a4g4_fmnist'), str(tmp_path / 'lbt'), 1, 1, 64
    )
    expected = [
        n
        for n, m in lbt.model.named_modules()
        if isinstance(m, grad_quant.LBTGradQuantizer)
    ]
    assert [
        n
        for n, m in runner.model.named_modules()
        if isinstance(m, grad_quant.LBTGradQuantizer)
    ] == expected
    assert all(q.bits == 4 and q.interval == interval for q in quantizers)
    assert all(q.seed == 1 and bool(q.initialized) for q in quantizers)
    if gamma is not None:
        assert all(float(q.gamma) == pytest.approx(gamma) for q in quantizers)
    assert not runner.cfg.custom_hooks


def test_accuracy_arms_in_table_order():
    args = types.SimpleNamespace(
        recipe='scratch',
        configs=[
            'lbt_w4a4g4_fmnist',
            'lbt_mse_w4a4g4_fmnist',
            'lbt_gamma06_w4a4g4_fmnist',
            'lbt_gamma08_w4a4g4_fmnist',
            'lbt_minmax_w4a4g4_fmnist',
            'fp32_finetune_fmnist',
        ],
    )
    assert list(grad_quant.accuracy_configs(args).items()) == [
        ('FP32', 'fp32_finetune_fmnist'),
        ('4/4/4 gamma=1 (min-max)', 'lbt_minmax_w4a4g4_fmnist'),
        ('4/4/4 fixed gamma=0.8', 'lbt_gamma08_w4a4g4_fmnist'),
        ('4/4/4 fixed gamma=0.6', 'lbt_gamma06_w4a4g4_fmnist'),
        ('4/4/4 MSE interval', 'lbt_mse_w4a4g4_fmnist'),
        ('4/4/4 LBT', 'lbt_w4a4g4_fmnist'),
    ]


def test_paired_lines_give_same_seed_differences():
    acc = {
        '4/4/4 gamma=1 (min-max)': [76.0, 77.0, 79.0],
        '4/4/4 fixed gamma=0.6': [78.0, 76.0, 80.0],
        '4/4/4 LBT': [77.0, 78.0, 79.0],
        '8/8/8 LBT': [80.0, 81.0, 82.0],
    }
    lines = grad_quant._paired_lines(acc, [0, 1, 2])
    rows = [line for line in lines if line.startswith('| 4/4/4')]
    # gamma=1: +1, +1, 0 -> mean 0.67, std 0.58, ahead on 2 seeds (a tie is
    # not ahead); gamma=0.6: -1, +2, -1 -> mean 0, std sqrt(3)
    assert rows == [
        '| 4/4/4 gamma=1 (min-max) | +1.00 | +1.00 | +0.00 | +0.67 ± 0.58 '
        '| 2 of 3 seeds |',
        '| 4/4/4 fixed gamma=0.6 | -1.00 | +2.00 | -1.00 | +0.00 ± 1.73 '
        '| 1 of 3 seeds |',
    ]
    assert grad_quant._paired_lines({'4/4/4 LBT': [1.0]}, [0]) == []


def _error_args(recipe):
    return types.SimpleNamespace(
        recipe=recipe, epochs=2, subset=64, error_iters=7, fp_checkpoint='none'
    )


def test_scratch_error_run_is_the_seed0_accuracy_run(tmp_path):
    name = 'lbt_w4a4g4_fmnist'
    error = grad_quant._error_runner(_error_args('scratch'), name, str(tmp_path))
    options = grad_quant.recipe_options('scratch', _config(name), seed=0)
    table = quant_accuracy.build_runner(
        _config(name), str(tmp_path), 0, 2, 64, cfg_options=options
    )
    assert error.cfg.to_dict() == table.cfg.to_dict()
    assert grad_quant._error_key(_error_args('scratch'), name) == (
        'lbt_w4a4g4_fmnist|scratch|2|64|seed0'
    )


def test_finetune_error_run_keeps_its_short_constant_lr_schedule(tmp_path):
    error = grad_quant._error_runner(
        _error_args('finetune'), 'lbt_w4a4g4_fmnist', str(tmp_path)
    )
    assert error.cfg.train_cfg.max_iters == 7
    assert error.cfg.param_scheduler == []
    assert grad_quant._error_key(_error_args('finetune'), 'lbt_w4a4g4_fmnist') == (
        'lbt_w4a4g4_fmnist|7|none|64'
    )
