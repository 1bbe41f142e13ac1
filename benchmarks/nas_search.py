"""Repeated ``tools/search.py`` runs on NAS-Bench-201: NB201 test accuracy of the
architecture each seed picks, mean +- std over the seeds.

    python benchmarks/nas_search.py --strategy random --steps 3000 \
        --seeds 1 2 3 4 5 --score-cache docs/nas/nb201_scores.jsonl \
        --json docs/nas/search_random.json --out docs/nas/README.md

Each seed runs ``tools/search.py`` (proxy ``--proxy``, NB201 C=16 N=5, no budget
unless ``--max-flops``) in ``<work-dir>/<strategy>_seed<k>``, so an interrupted run
resumes; the proxy values come from ``--score-cache`` where it holds them (torch
seed ``--proxy-seed`` for every architecture, as ``benchmarks/nas_proxies.py``).
``--strategy random --steps 3000`` is the AZ-NAS paper's NB201 protocol (the best
of 3,000 random architectures by rank aggregation within them, 5 runs).
``--cached-only`` restricts every search to the architectures the cache holds; for
a cache that is a prefix of ``nas_proxies.py``'s permutation (a uniform random
subset of the space) uniform draws from it are uniform draws from the space.
"""

import argparse
import json
import os.path as osp
import sys

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402

from mmcompress.nas import NB201Space, NB201Table, aggregate_ranks  # noqa: E402
from mmcompress.nas.benchmark_table import DATASETS  # noqa: E402
from mmcompress.nas.score_cache import PROXY_KEYS, load_score_cache  # noqa: E402
from mmcompress.nas.scoring import AZ_NAS_KEYS  # noqa: E402
from tools.search import main as search_main  # noqa: E402


def run_seed(args, seed, table, space):
    """One search; its pick, accuracies and the best accuracy among its archs."""
    work = osp.join(args.work_dir, f'{args.strategy}_seed{seed}')
    argv = [
        '--strategy',
        args.strategy,
        '--proxy',
        args.proxy,
        '--steps',
        str(args.steps),
        '--population',
        str(args.population),
        '--tournament',
        str(args.tournament),
        '--seed',
        str(seed),
        '--proxy-seed',
        str(args.proxy_seed),
        '--work-dir',
        work,
        '--no-progress',
    ]
    if args.score_cache:
        argv += ['--score-cache', args.score_cache]
    if args.max_flops:
        argv += ['--max-flops', str(args.max_flops)]
    if args.cached_only:
        argv += ['--cached-only']
    out = search_main(argv)
    with open(osp.join(work, 'search_state.json')) as f:
        archs = [tuple(h['arch']) for h in json.load(f)['history']]
    idx = [table.index(a) for a in archs]
    picked = table.index(space.from_str(out['arch']))
    c10 = table.acc[:, 0]
    return dict(
        seed=seed,
        arch=out['arch'],
        flops=out['flops'],
        acc=out['nb201_test_acc'],
        best_scored_c10=float(c10[idx].max()),
        # 1 = the best CIFAR-10 architecture of the whole space
        c10_rank_in_space=int((c10 > c10[picked]).sum()) + 1,
        scored=len(idx),
        score_cache=out.get('score_cache'),
    )


def protocol_spread(cache, table, steps, draws):
    """CIFAR-10 accuracy of the AZ-NAS pick of ``draws`` independent uniform
    draws of ``steps`` architectures from the cached ones (the random-search
    rule: rank aggregation within the draw, arg-max), for the spread of one run
    of the protocol; numpy seeds 0 .. draws-1."""
    idx = np.array(sorted(i for i, r in cache.items() if AZ_NAS_KEYS[2] in r))
    cols = {k: np.array([cache[i][k] for i in idx]) for k in AZ_NAS_KEYS}
    picks = []
    for seed in range(draws):
        sub = np.random.default_rng(seed).choice(len(idx), steps, replace=False)
        agg = aggregate_ranks({k: v[sub] for k, v in cols.items()})
        picks.append(float(table.acc[idx[sub[int(np.argmax(agg))]], 0]))
    picks = np.array(picks)
    return dict(
        draws=draws,
        steps=steps,
        mean=float(picks.mean()),
        std=float(picks.std()),
        at_least_93_5=float((picks >= 93.5).mean()),
    )


def summary(rows):
    """Mean and population std over the seeds of each dataset's accuracy."""
    return {
        d: dict(
            mean=float(np.mean([r['acc'][d] for r in rows])),
            std=float(np.std([r['acc'][d] for r in rows])),
        )
        for d in DATASETS
    }


def arch_cell(arch):
    """An arch string for a markdown table cell (its ``|`` escaped)."""
    return arch.replace('|', '\\|')


def markdown(result):
    a = result['args']
    head = (
        f'`--strategy {a["strategy"]} --proxy {a["proxy"]} --steps {a["steps"]}`'
        + (
            f' (population {a["population"]}, tournament {a["tournament"]})'
            if a['strategy'] == 'evolution'
            else ''
        )
        + (
            f' `--cached-only` ({result["cache_archs"]} architectures in the cache)'
            if a['cached_only']
            else ''
        )
        + f', proxy torch seed {a["proxy_seed"]}, seeds '
        + ', '.join(str(r['seed']) for r in result['rows'])
        + '.'
    )
    lines = [
        head,
        '',
        '| seed | picked architecture | MFLOPs | C-10 | C-100 | IN16 | C-10 rank in '
        'the space | best C-10 among the scored |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in result['rows']:
        lines.append(
            f'| {r["seed"]} | `{arch_cell(r["arch"])}` | {r["flops"] / 1e6:.1f} | '
            f'{r["acc"]["cifar10"]:.2f} | {r["acc"]["cifar100"]:.2f} | '
            f'{r["acc"]["imagenet16-120"]:.2f} | {r["c10_rank_in_space"]} | '
            f'{r["best_scored_c10"]:.2f} |'
        )
    s = result['summary']
    lines.append(
        '| **mean ± std** | | | '
        + ' | '.join(f'**{s[d]["mean"]:.2f} ± {s[d]["std"]:.2f}**' for d in DATASETS)
        + ' | | |'
    )
    if 'spread' in result:
        sp = result['spread']
        lines += [
            '',
            f'One run of the protocol (best of {sp["steps"]} uniform random cached '
            f'architectures by AZ-NAS rank aggregation within them), {sp["draws"]} '
            f'independent draws: CIFAR-10 {sp["mean"]:.2f} ± {sp["std"]:.2f} '
            f'(mean ± std); {100 * sp["at_least_93_5"]:.0f} % of the runs pick '
            '>= 93.5 %.',
        ]
    return '\n'.join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--strategy', default='random', choices=['random', 'evolution'])
    p.add_argument('--proxy', default='az_nas')
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--population', type=int, default=16)
    p.add_argument('--tournament', type=int, default=4)
    p.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3, 4, 5])
    p.add_argument('--proxy-seed', type=int, default=0)
    p.add_argument('--max-flops', type=float)
    p.add_argument('--score-cache', help='JSON lines of benchmarks/nas_proxies.py')
    p.add_argument(
        '--cached-only',
        action='store_true',
        help='search only the archs the cache holds (tools/search.py --cached-only)',
    )
    p.add_argument('--work-dir', default='work_dirs/nas_search')
    p.add_argument('--json', help='write the rows and the summary here')
    p.add_argument(
        '--spread',
        type=int,
        metavar='N',
        help='also: the pick of N independent random draws of --steps cached '
        'AZ-NAS archs (the spread of one run of the random protocol)',
    )
    p.add_argument(
        '--out', help='markdown page: replace its nas-search-<strategy> block'
    )
    args = p.parse_args()
    if args.spread and not args.score_cache:
        p.error('--spread needs --score-cache (AZ-NAS scores)')
    table, space = NB201Table(), NB201Space()
    rows = [run_seed(args, s, table, space) for s in args.seeds]
    result = dict(args=vars(args), rows=rows, summary=summary(rows))
    if args.score_cache:
        key = PROXY_KEYS.get(args.proxy, ('flops',))[0]
        cache = load_score_cache(args.score_cache)
        result['cache_archs'] = sum(key in r for r in cache.values())
        if args.spread:
            result['spread'] = protocol_spread(cache, table, args.steps, args.spread)
    print(markdown(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    if args.out:
        write_block(args.out, f'nas-search-{args.strategy}', markdown(result))


if __name__ == '__main__':
    main()
