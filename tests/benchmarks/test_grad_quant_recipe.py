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
