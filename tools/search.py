"""Evolutionary architecture search with a training-free proxy or an accuracy
predictor under a FLOPs / parameter budget; writes the chosen architecture as an
mmpretrain config that the stock ``tools/train.py`` trains.

    python tools/search.py --proxy az_nas --steps 200 --max-flops 100e6 \
        --work-dir work_dirs/search_az

Interrupt and run the same command again to resume (``<work-dir>/search_state.json``).
``--proxy predictor`` trains a cascade-bagging predictor on ``--predictor-k``
architectures of the packaged NB201 table (CIFAR-10 labels) and searches with it.
``--strategy random`` scores ``--steps`` uniform random architectures and picks
the best of them (the official AZ-NAS NB201 protocol, 3,000 architectures):

    python tools/search.py --strategy random --steps 3000 --seed 1 \
        --proxy-seed 0 --score-cache docs/nas/nb201_scores.jsonl \
        --work-dir work_dirs/search_az_random_1

``--score-cache`` takes the proxy values of NB201 (C=16, N=5) architectures from a
``benchmarks/nas_proxies.py`` cache (written with torch seed ``--proxy-seed``,
batch 64, 32 x 32) instead of recomputing them; the first cached architecture is
recomputed to check that the settings match; ``--cached-only`` draws and mutates
only architectures the cache holds. The written config is
``<work-dir>/searched_<space>.py``.
"""

import argparse
import json
import os
import os.path as osp

import numpy as np
from mmengine.config import Config

from mmcompress.nas import NB201Space, NB201Table
from mmcompress.nas.mbv2_space import MobileNetSpace
from mmcompress.nas.score_cache import CachedScorer
from mmcompress.nas.scoring import AZ_NAS_KEYS, PROXIES, score_arch
from mmcompress.nas.search import Budget, EvolutionSearch, RandomSearch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEMPLATES = {
    s: osp.join(REPO, 'configs', 'nas', 'mmpretrain', f'{s}_fmnist.py')
    for s in ('nb201', 'mbv2')
}
CHOICES = sorted(PROXIES) + ['flops', 'predictor']
STRATEGIES = dict(evolution=EvolutionSearch, random=RandomSearch)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--space', default='nb201', choices=sorted(TEMPLATES))
    p.add_argument('--proxy', default='az_nas', choices=CHOICES)
    p.add_argument(
        '--strategy',
        default='evolution',
        choices=sorted(STRATEGIES),
        help='evolution, or the best of --steps uniform random archs',
    )
    p.add_argument('--steps', type=int, default=100, help='archs scored in total')
    p.add_argument('--population', type=int, default=16)
    p.add_argument('--tournament', type=int, default=4)
    p.add_argument('--max-flops', type=float, help='FLOPs budget (one input)')
    p.add_argument('--max-params', type=float, help='parameter budget')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--proxy-seed',
        type=int,
        help='torch seed of every proxy score (default: --seed)',
    )
    p.add_argument(
        '--score-cache',
        help='JSON lines of benchmarks/nas_proxies.py: read the proxy values of '
        'the NB201 archs it holds instead of recomputing them',
    )
    p.add_argument('--batch-size', type=int, default=64, help='proxy input batch')
    p.add_argument('--resolution', type=int, help='proxy input side (space default)')
    p.add_argument('--C', type=int, default=16, help='NB201 stem channels')
    p.add_argument('--N', type=int, default=5, help='NB201 cells per stage')
    p.add_argument(
        '--cached-only',
        action='store_true',
        help='draw and mutate only archs whose values --score-cache holds (a '
        'uniform random pool when the cache is a prefix of nas_proxies.py)',
    )
    p.add_argument('--predictor-k', type=int, default=100)
    p.add_argument('--template', help='mmpretrain config to fill (space default)')
    p.add_argument('--work-dir', required=True)
    p.add_argument('--no-progress', action='store_true')
    return p.parse_args(argv)


def make_scorer(args, space):
    """Return ``(scorer, fitness_keys)`` for the chosen proxy or predictor."""
    if args.proxy == 'predictor':
        if space.name != 'nb201':
            raise ValueError(
                f'--proxy predictor trains on the NB201 table; the {space.name} space '
                'has no labelled architectures: use a proxy'
            )
        from mmcompress.nas.predictor import CascadeBaggingPredictor

        table = NB201Table()
        rng = np.random.default_rng(args.seed)
        train = rng.choice(len(table), args.predictor_k, replace=False)
        x = np.stack([space.effective_encode(c) for c in table.codes[train]])
        model = CascadeBaggingPredictor(seed=args.seed).fit(x, table.acc[train, 0])

        def scorer(arch):
            feat = space.effective_encode(arch)[None]
            return dict(predicted=float(model.predict(feat)[0]))

        return scorer, ('predicted',)
    proxies = ['az_nas'] if args.proxy == 'az_nas' else [args.proxy]
    keys = AZ_NAS_KEYS if args.proxy == 'az_nas' else (args.proxy,)
    kwargs = dict(
        seed=args.seed if args.proxy_seed is None else args.proxy_seed,
        batch_size=args.batch_size,
        resolution=args.resolution or getattr(space, 'resolution', 32),
    )
    if args.score_cache:
        return CachedScorer(space, args.score_cache, proxies, **kwargs), keys

    def scorer(arch):
        return score_arch(space, arch, proxies, **kwargs)

    return scorer, keys


def write_config(args, space, arch) -> str:
    """Fill the template's backbone with ``arch``; return the written path."""
    cfg = Config.fromfile(args.template or TEMPLATES[space.name])
    cfg.model.backbone.update(space.backbone_cfg(arch))
    cfg.model.head.in_channels = space.build(arch, num_classes=0).out_channels
    cfg.work_dir = osp.join(args.work_dir, 'train')
    out = osp.join(args.work_dir, f'searched_{space.name}.py')
    cfg.dump(out)
    return out


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    if args.space == 'nb201':
        space = NB201Space(C=args.C, N=args.N)
    else:
        space = MobileNetSpace()
    if args.score_cache and args.proxy == 'predictor':
        raise ValueError('--score-cache holds proxy values; --proxy predictor has none')
    if args.cached_only and not args.score_cache:
        raise ValueError('--cached-only needs --score-cache')
    scorer, keys = make_scorer(args, space)
    pool = {}
    if args.cached_only:
        pool = dict(pool=scorer.holds, pool_name=f'archs held by {args.score_cache}')
    search = STRATEGIES[args.strategy](
        space,
        scorer,
        keys,
        Budget(space, args.max_flops, args.max_params, **pool),
        population=args.population,
        tournament=args.tournament,
        seed=args.seed,
        state_file=osp.join(args.work_dir, 'search_state.json'),
    )
    best = search.run(args.steps, progress=not args.no_progress)
    arch = tuple(best['arch'])
    summary = dict(
        arch=space.to_str(arch),
        flops=space.flops(arch),
        scores=best['scores'],
        fitness=best['fitness'],
        proxy=args.proxy,
        strategy=args.strategy,
        steps=args.steps,
        seed=args.seed,
    )
    if isinstance(scorer, CachedScorer):
        summary['score_cache'] = dict(
            path=args.score_cache,
            hits=scorer.hits,
            computed=scorer.misses,
            cached_only=args.cached_only,
        )
    if space.name == 'nb201' and (args.C, args.N) == (16, 5):
        table = NB201Table()
        summary['nb201_test_acc'] = {
            d: table.accuracy(arch, d)
            for d in ('cifar10', 'cifar100', 'imagenet16-120')
        }
    summary['config'] = write_config(args, space, arch)
    with open(osp.join(args.work_dir, 'search_result.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == '__main__':
    main()
