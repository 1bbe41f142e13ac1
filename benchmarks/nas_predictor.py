"""Few-sample accuracy predictors on NAS-Bench-201: train on k architectures, rank
the remaining 15,625 - k; Kendall tau (mean +- std over samples of the k).

Features: the one-hot cell encoding (30), optionally with the FLOPs rank as a
zero-cost feature (``+flops``). Methods: cascade bagging (with and without weak
labels on 500 unlabelled archs), a single MLP, a random forest.

    nice -n 10 python benchmarks/nas_predictor.py --ks 50 100 200 --samples 5 \
        --json docs/nas/predictor.json

With ``--proxy-cache work_dirs/nas/nb201_scores.jsonl`` the architectures are those
scored by ``benchmarks/nas_proxies.py`` (train on k of them, rank the others) and a
third feature set adds their AZ-NAS proxy ranks.
"""

import argparse
import json
import time

import numpy as np
from scipy import stats

from mmcompress.nas import NB201Space, NB201Table, aggregate_ranks
from mmcompress.nas.benchmark_table import DATASETS
from mmcompress.nas.predictor import PREDICTORS
from mmcompress.nas.scoring import AZ_NAS_KEYS, nan_to_neginf


def features(table, with_flops):
    space = NB201Space()
    x = np.stack([space.encode(c) for c in table.codes])
    if with_flops:
        flops = np.array([space.flops(c) for c in table.codes], dtype=np.float64)
        x = np.column_stack([x, stats.rankdata(flops) / len(flops)])
    return x


def proxy_features(path):
    """Indices of the archs scored with AZ-NAS in ``path`` and their features:
    the rank (fraction) of each AZ-NAS proxy and of the aggregated score."""
    cache = {}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            cache.setdefault(rec.pop('index'), {}).update(rec)
    idx = sorted(i for i, r in cache.items() if all(k in r for k in AZ_NAS_KEYS))
    cols = {k: [cache[i][k] for i in idx] for k in AZ_NAS_KEYS}
    ranks = [stats.rankdata(nan_to_neginf(cols[k])[0]) / len(idx) for k in AZ_NAS_KEYS]
    agg = stats.rankdata(aggregate_ranks(cols)) / len(idx)
    return np.asarray(idx), np.column_stack(ranks + [agg])


def run(method, x, y, k, sample, weak):
    rng = np.random.default_rng(1000 + sample)
    perm = rng.permutation(len(y))
    train, rest = perm[:k], perm[k:]
    n_unl = min(500, len(rest) // 2)
    unl = x[rng.choice(rest, n_unl, replace=False)] if weak else None
    model = PREDICTORS[method](seed=sample).fit(x[train], y[train], unl)
    return stats.kendalltau(model.predict(x[rest]), y[rest])[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ks', type=int, nargs='+', default=[50, 100, 200])
    parser.add_argument('--samples', type=int, default=5)
    parser.add_argument('--dataset', default='cifar10', choices=DATASETS)
    parser.add_argument('--json')
    parser.add_argument(
        '--proxy-cache',
        help='scores of benchmarks/nas_proxies.py: restrict to the archs scored '
        'there and add their AZ-NAS proxy ranks as features',
    )
    args = parser.parse_args()
    table = NB201Table()
    y = table.acc[:, DATASETS.index(args.dataset)]
    feats = {'onehot': features(table, False), 'onehot+flops': features(table, True)}
    if args.proxy_cache:
        idx, proxy_feats = proxy_features(args.proxy_cache)
        y = y[idx]
        feats = {name: x[idx] for name, x in feats.items()}
        feats['onehot+az_nas'] = np.column_stack([feats['onehot'], proxy_feats])
        print(f'{len(idx)} architectures with AZ-NAS scores in {args.proxy_cache}')
    variants = [
        ('cascade+weak', 'cascade', True),
        ('cascade', 'cascade', False),
        ('mlp', 'mlp', False),
        ('rf', 'rf', False),
    ]
    rows = []
    for k in args.ks:
        for fname, x in feats.items():
            for label, method, weak in variants:
                t0 = time.perf_counter()
                taus = [run(method, x, y, k, s, weak) for s in range(args.samples)]
                rows.append(
                    dict(
                        k=k,
                        features=fname,
                        method=label,
                        tau_mean=float(np.mean(taus)),
                        tau_std=float(np.std(taus)),
                        taus=taus,
                        seconds=(time.perf_counter() - t0) / args.samples,
                    )
                )
                r = rows[-1]
                print(
                    f'k={k:4d} {fname:13s} {label:13s} tau '
                    f'{r["tau_mean"]:.3f} +- {r["tau_std"]:.3f} '
                    f'({r["seconds"]:.1f} s/run)',
                    flush=True,
                )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(dataset=args.dataset, samples=args.samples, rows=rows), f, indent=1
            )


if __name__ == '__main__':
    main()
