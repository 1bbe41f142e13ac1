"""Evolutionary search: budget, resume, AZ-NAS fitness, tools/search.py config."""

import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcompress.nas import NB201Space, NB201Table, aggregate_ranks
from mmcompress.nas.search import Budget, EvolutionSearch
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool

from ..e2e.runs import run_tool

TABLE = NB201Table()


def _acc_scorer(arch):
    return dict(acc=TABLE.accuracy(arch))


def test_search_respects_budget_and_improves():
    space = NB201Space()
    budget = Budget(space, max_flops=60e6)
    search = EvolutionSearch(space, _acc_scorer, ['acc'], budget, population=8, seed=1)
    best = search.run(60, progress=False)
    assert all(space.flops(h['arch']) <= 60e6 for h in search.history)
    assert len({tuple(h['arch']) for h in search.history}) == 60  # no re-scoring
    # evolution on the true accuracy beats the random initial population
    assert best['scores']['acc'] > max(h['scores']['acc'] for h in search.history[:8])
    assert best['scores']['acc'] == max(h['scores']['acc'] for h in search.history)


def test_resumed_search_equals_uninterrupted(tmp_path):
    space = NB201Space()
    state = str(tmp_path / 'state.json')

    def make(path):
        return EvolutionSearch(
            space,
            _acc_scorer,
            ['acc'],
            Budget(space),
            population=4,
            seed=3,
            state_file=path,
        )

    make(state).run(10, progress=False)
    resumed = make(state)
    assert len(resumed.history) == 10
    resumed.run(25, progress=False)
    straight = make(None)
    straight.run(25, progress=False)
    assert [h['arch'] for h in resumed.history] == [h['arch'] for h in straight.history]


def test_az_nas_fitness_is_rank_aggregation_over_history():
    space = NB201Space()
    rng = np.random.default_rng(0)

    def scorer(arch):
        return {k: float(rng.normal()) for k in ('e', 'p', 't', 'f')}

    search = EvolutionSearch(
        space, scorer, ['e', 'p', 't', 'f'], Budget(space), population=4
    )
    search.run(12, progress=False)
    cols = {k: [h['scores'][k] for h in search.history] for k in 'eptf'}
    assert np.allclose(search.fitness(), aggregate_ranks(cols, tuple('eptf')))


def test_tool_writes_mmpretrain_config(tmp_path):
    from tools.search import main

    out = main(
        [
            '--proxy',
            'az_nas',
            '--C',
            '4',
            '--N',
            '1',
            '--batch-size',
            '8',
            '--resolution',
            '8',
            '--steps',
            '5',
            '--population',
            '3',
            '--tournament',
            '2',
            '--work-dir',
            str(tmp_path),
            '--no-progress',
        ]
    )
    cfg = Config.fromfile(out['config'])
    assert cfg.model.backbone.arch == out['arch']
    assert (cfg.model.backbone.C, cfg.model.backbone.N) == (4, 1)
    assert cfg.model.head.in_channels == 16
    from mmpretrain.registry import MODELS

    import mmcompress  # noqa: F401

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    assert model(torch.randn(2, 1, 28, 28), mode='tensor').shape == (2, 10)
    state = json.load(open(osp.join(tmp_path, 'search_state.json')))
    assert len(state['history']) == 5


@pytest.mark.slow
def test_searched_config_trains_with_stock_tool(tmp_path):
    """The written config runs through mmpretrain's own tools/train.py."""
    from tools.search import main

    out = main(
        [
            '--proxy',
            'flops',
            '--C',
            '4',
            '--N',
            '1',
            '--steps',
            '4',
            '--population',
            '3',
            '--tournament',
            '2',
            '--work-dir',
            str(tmp_path),
            '--no-progress',
        ]
    )
    cfg = Config.fromfile(out['config'])
    shrink_data(cfg, batch_size=16, subset_size=dict(train=64, val=32, test=32))
    shorten_schedule(cfg, iters=4, log_interval=1, param_scheduler=[])
    cfg.work_dir = str(tmp_path / 'train')
    path = str(tmp_path / 'short.py')
    cfg.dump(path)
    run_tool(stock_tool('mmpretrain'), [path])
    assert osp.exists(osp.join(cfg.work_dir, 'iter_4.pth'))


def test_tool_mobilenet_space_config(tmp_path):
    from tools.search import main

    out = main(
        [
            '--space',
            'mbv2',
            '--proxy',
            'az_nas',
            '--batch-size',
            '4',
            '--steps',
            '3',
            '--population',
            '2',
            '--tournament',
            '1',
            '--max-flops',
            '12e6',
            '--work-dir',
            str(tmp_path),
            '--no-progress',
        ]
    )
    assert out['flops'] <= 12e6 and 'nb201_test_acc' not in out
    cfg = Config.fromfile(out['config'])
    assert cfg.model.backbone.type == 'MobileNetSpaceBackbone'
    assert cfg.model.backbone.arch == out['arch']
    from mmpretrain.registry import MODELS

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    assert model(torch.randn(2, 1, 28, 28), mode='tensor').shape == (2, 10)


def test_tool_predictor_guided_search(tmp_path):
    from tools.search import main

    out = main(
        [
            '--proxy',
            'predictor',
            '--predictor-k',
            '30',
            '--steps',
            '6',
            '--population',
            '3',
            '--tournament',
            '2',
            '--work-dir',
            str(tmp_path),
            '--no-progress',
        ]
    )
    assert set(out['scores']) == {'predicted'}
    assert set(out['nb201_test_acc']) == {'cifar10', 'cifar100', 'imagenet16-120'}
    assert out['nb201_test_acc']['cifar10'] == TABLE.accuracy(
        NB201Space().from_str(out['arch'])
    )
