"""Rank correlation of training-free proxies with NAS-Bench-201 test accuracy.

Scores a fixed random sample of NB201 architectures (or all 15,625 with --num 15625)
with AZ-NAS and the baselines, caching every architecture's scores in a JSON-lines
file so an interrupted run resumes where it stopped, then prints Kendall tau-b and
Spearman rho against CIFAR-10 / CIFAR-100 / ImageNet16-120 accuracy over the
architectures scored so far (the sample order is a fixed permutation, so any prefix
is itself a uniform random sample).

    nice -n 10 python benchmarks/nas_proxies.py --num 1000 --proxies az_nas synflow \
        --cache work_dirs/nas/nb201_scores.jsonl --json docs/nas/proxies.json \
        --plot docs/nas/az_nas_scatter.png
"""

import argparse
import json
import os
import os.path as osp
import time

import numpy as np
import torch
from tqdm import tqdm

from mmcompress.nas import NB201Space, NB201Table, aggregate_ranks, rank_correlation
from mmcompress.nas.benchmark_table import DATASETS
from mmcompress.nas.scoring import AZ_NAS_KEYS, count_neginf, score_arch

PROXY_KEYS = {
    'az_nas': AZ_NAS_KEYS[:3],
    'synflow': ('synflow',),
    'naswot': ('naswot',),
    'zico': ('zico',),
}


def load_cache(path):
    """Return {benchmark index: {proxy value name: value, 'seconds/<proxy>': s}}."""
    cache = {}
    if osp.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    cache.setdefault(rec.pop('index'), {}).update(rec)
    return cache


def score_missing(order, proxies, cache, path, table, seed):
    """Score every architecture of ``order`` lacking a proxy; append to the cache."""
    space = NB201Space()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    todo = [
        i
        for i in order
        if any(PROXY_KEYS[p][0] not in cache.get(i, {}) for p in proxies)
    ]
    with open(path, 'a') as f:
        for i in tqdm(todo, desc='scoring', mininterval=10):
            arch = tuple(int(v) for v in table.codes[i])
            rec = {}
            for p in proxies:
                if PROXY_KEYS[p][0] in cache.get(i, {}):
                    continue
                t0 = time.perf_counter()
                rec.update(score_arch(space, arch, [p], seed=seed))
                rec[f'seconds/{p}'] = time.perf_counter() - t0
            cache.setdefault(i, {}).update(rec)
            f.write(json.dumps(dict(index=int(i), **rec)) + '\n')
            f.flush()


def evaluate(order, proxies, cache, table):
    """Correlation table over the architectures of ``order`` scored with all proxies."""
    done = [
        i for i in order if all(PROXY_KEYS[p][0] in cache.get(i, {}) for p in proxies)
    ]
    cols = {'flops': [cache[i]['flops'] for i in done]}
    for p in proxies:
        for k in PROXY_KEYS[p]:
            cols[k] = [cache[i][k] for i in done]
    scores = dict(cols)
    if 'az_nas' in proxies:
        scores['az_nas'] = aggregate_ranks(cols)
    result = dict(num_archs=len(done), neginf=count_neginf(cols), table={})
    for name, s in scores.items():
        result['table'][name] = {
            d: rank_correlation(s, table.acc[done, j]) for j, d in enumerate(DATASETS)
        }
    # accuracy of the architecture each proxy ranks first in the sample
    result['selected'] = {
        name: {
            d: float(table.acc[done[int(np.argmax(s))], j])
            for j, d in enumerate(DATASETS)
        }
        for name, s in scores.items()
    }
    result['best_in_sample'] = {
        d: float(table.acc[done, j].max()) for j, d in enumerate(DATASETS)
    }
    result['seconds_per_arch'] = {
        p: float(np.mean([cache[i][f'seconds/{p}'] for i in done])) for p in proxies
    }
    return result, done, scores


def markdown(result):
    lines = [
        '| proxy | ' + ' | '.join(f'{d} KT | {d} SPR' for d in DATASETS) + ' |',
        '|---' * (1 + 2 * len(DATASETS)) + '|',
    ]
    for name, row in result['table'].items():
        vals = ' | '.join(
            f'{row[d]["kendall_tau"]:.3f} | {row[d]["spearman"]:.3f}' for d in DATASETS
        )
        lines.append(f'| {name} | {vals} |')
    return '\n'.join(lines)


def scatter(path, score, acc, title):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from scipy import stats

    fig, ax = plt.subplots(figsize=(5, 4))
    rank = stats.rankdata(score) / len(score)
    ax.scatter(rank, acc, s=4, alpha=0.5)
    ax.set_xlabel('AZ-NAS rank (fraction of the sample, 1 = best)')
    ax.set_ylabel('CIFAR-10 test accuracy (%)')
    ax.set_ylim(max(acc.min(), 80), acc.max() + 0.5)
    hidden = int((acc < 80).sum())
    ax.set_title(
        title + (f'\n({hidden} below 80 % not shown)' if hidden else ''), fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=1000, help='archs (15625 = all)')
    parser.add_argument('--sample-seed', type=int, default=0)
    parser.add_argument('--seed', type=int, default=0, help='torch seed per arch')
    parser.add_argument(
        '--proxies', nargs='+', default=['az_nas'], choices=sorted(PROXY_KEYS)
    )
    parser.add_argument('--cache', default='work_dirs/nas/nb201_scores.jsonl')
    parser.add_argument('--eval-only', action='store_true')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--json', help='write the result table here')
    parser.add_argument('--plot', help='write the AZ-NAS rank/accuracy scatter here')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = NB201Table()
    order = np.random.default_rng(args.sample_seed).permutation(len(table))
    order = [int(i) for i in order[: args.num]]
    cache = load_cache(args.cache)
    if not args.eval_only:
        score_missing(order, args.proxies, cache, args.cache, table, args.seed)
    result, done, scores = evaluate(order, args.proxies, cache, table)
    result.update(sample_seed=args.sample_seed, seed=args.seed, proxies=args.proxies)
    print(
        f'{result["num_archs"]} architectures; -inf counts {result["neginf"]}; '
        f'seconds/arch {result["seconds_per_arch"]}'
    )
    print(markdown(result))
    print('accuracy of the top-ranked arch:', json.dumps(result['selected']))
    print('best accuracy in the sample:', json.dumps(result['best_in_sample']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    if args.plot and 'az_nas' in scores:
        tau = result['table']['az_nas']['cifar10']['kendall_tau']
        scatter(
            args.plot,
            scores['az_nas'],
            table.acc[done, 0],
            f'AZ-NAS on {len(done)} random NB201 archs, CIFAR-10, tau={tau:.3f}',
        )


if __name__ == '__main__':
    main()
