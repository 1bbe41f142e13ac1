"""Evolutionary and random search: budget, resume, AZ-NAS fitness, score cache,
tools/search.py config."""

import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcompress.nas import NB201Space, NB201Table, aggregate_ranks
from mmcompress.nas.search import Budget, EvolutionSearch, RandomSearch
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


def test_random_search_is_best_of_uniform_draws(tmp_path):
    space = NB201Space()
    state = str(tmp_path / 'state.json')
    search = RandomSearch(
        space, _acc_scorer, ['acc'], Budget(space), seed=2, state_file=state
    )
    best = search.run(40, progress=False)
    archs = [tuple(h['arch']) for h in search.history]
    # draw t is the first not-yet-drawn space.sample of the stream (2, t)
    for t, arch in enumerate(archs):
        rng = np.random.default_rng([2, t])
        while True:
            cand = space.sample(rng)
            if cand not in archs[:t]:
                break
        assert arch == cand
    assert best['scores']['acc'] == max(TABLE.accuracy(a) for a in archs)
    # an evolution may not resume a random search's state
    with pytest.raises(ValueError, match="'random' search, not an? 'evolution'"):
        EvolutionSearch(
            space, _acc_scorer, ['acc'], Budget(space), seed=2, state_file=state
        )


def test_tool_random_search_reads_score_cache(tmp_path):
    from tools.search import main

    space = NB201Space()
    # the five draws of seed 4; the cache holds the FLOPs of three of them
    drawn = []
    for t in range(5):
        rng = np.random.default_rng([4, t])
        while (arch := space.sample(rng)) in drawn:
            pass
        drawn.append(arch)
    cache = tmp_path / 'scores.jsonl'
    cache.write_text(
        ''.join(
            json.dumps(dict(index=TABLE.index(a), flops=float(space.flops(a)))) + '\n'
            for a in drawn[:3]
        )
    )
    args = ['--strategy', 'random', '--proxy', 'flops', '--steps', '5', '--seed', '4']
    out = main(
        args
        + ['--score-cache', str(cache), '--work-dir', str(tmp_path / 'w')]
        + ['--no-progress']
    )
    assert out['score_cache']['hits'] == 3 and out['score_cache']['computed'] == 2
    top = max(drawn, key=space.flops)
    assert out['arch'] == space.to_str(top)
    assert out['nb201_test_acc']['cifar10'] == TABLE.accuracy(top)
    state = json.load(open(tmp_path / 'w' / 'search_state.json'))
    assert state['strategy'] == 'random'
    assert [tuple(h['arch']) for h in state['history']] == drawn
    with pytest.raises(ValueError, match='C=16, N=5'):
        main(
            args
            + ['--C', '8', '--score-cache', str(cache)]
            + ['--work-dir', str(tmp_path / 'w2'), '--no-progress']
        )


def test_tool_cached_only_searches_the_cached_pool(tmp_path):
    from tools.search import main

    space = NB201Space()
    cache = tmp_path / 'scores.jsonl'
    even = [i for i in range(len(TABLE)) if i % 2 == 0]
    cache.write_text(
        ''.join(
            json.dumps(dict(index=i, flops=float(space.flops(TABLE.codes[i])))) + '\n'
            for i in even
        )
    )
    args = ['--proxy', 'flops', '--steps', '12', '--population', '4']
    args += ['--score-cache', str(cache), '--cached-only', '--no-progress']
    for strategy in ('random', 'evolution'):
        work = tmp_path / strategy
        out = main(args + ['--strategy', strategy, '--work-dir', str(work)])
        assert out['score_cache']['hits'] == 12
        assert out['score_cache']['computed'] == 0
        state = json.load(open(work / 'search_state.json'))
        assert all(TABLE.index(h['arch']) % 2 == 0 for h in state['history'])
    cache.write_text('')
    with pytest.raises(ValueError, match='pool=archs held by'):
        main(args + ['--work-dir', str(tmp_path / 'empty')])
    with pytest.raises(ValueError, match='--cached-only needs --score-cache'):
        main(['--cached-only', '--work-dir', str(tmp_path / 'x')])


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
