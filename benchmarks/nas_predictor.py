"""Few-sample accuracy predictors on NAS-Bench-201: train on k architectures, rank
the remaining 15,625 - k; Kendall tau (mean +- std over samples of the k).

Features: the one-hot cell encoding (30), optionally with the FLOPs rank as a
zero-cost feature (``+flops``). Methods: cascade bagging (with and without weak
labels on 500 unlabelled archs), a single MLP, a random forest.

    nice -n 10 python benchmarks/nas_predictor.py --ks 50 100 200 --samples 5 \
        --json docs/nas/predictor.json
"""

import argparse
import json
import time

import numpy as np
from scipy import stats

from mmcompress.nas import NB201Space, NB201Table
from mmcompress.nas.benchmark_table import DATASETS
from mmcompress.nas.predictor import PREDICTORS


def features(table, with_flops):
    space = NB201Space()
    x = np.stack([space.encode(c) for c in table.codes])
    if with_flops:
        flops = np.array([space.flops(c) for c in table.codes], dtype=np.float64)
        x = np.column_stack([x, stats.rankdata(flops) / len(flops)])
    return x


def run(method, x, y, k, sample, weak):
    rng = np.random.default_rng(1000 + sample)
    perm = rng.permutation(len(y))
    train, rest = perm[:k], perm[k:]
    unl = x[rng.choice(rest, 500, replace=False)] if weak else None
    model = PREDICTORS[method](seed=sample).fit(x[train], y[train], unl)
    return stats.kendalltau(model.predict(x[rest]), y[rest])[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ks', type=int, nargs='+', default=[50, 100, 200])
    parser.add_argument('--samples', type=int, default=5)
    parser.add_argument('--dataset', default='cifar10', choices=DATASETS)
    parser.add_argument('--json')
    args = parser.parse_args()
    table = NB201Table()
    y = table.acc[:, DATASETS.index(args.dataset)]
    feats = {'onehot': features(table, False), 'onehot+flops': features(table, True)}
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
