"""Few-sample accuracy predictors on NAS-Bench-201: train on k architectures, rank
the remaining 15,625 - k; Kendall tau (mean +- std over samples of the k).

Features: the one-hot cell encoding (``onehot``, 30) or the effective encoding
(``effective``, 33: one-hot of the live cell, live conv cost, conv depth,
connectedness; ``NB201Space.effective_encode``). Methods: cascade bagging with and
without weak labels on 300 unlabelled archs, one NuSVR (the cascade's base model),
an MLP, a random forest, a GIN on the cell graph (raw cell for ``onehot``, live cell
for ``effective``).

    nice -n 10 python benchmarks/nas_predictor.py --ks 50 100 200 --samples 5 \
        --json docs/nas/predictor.json

With ``--proxy-cache work_dirs/nas/nb201_scores.jsonl`` the architectures are those
scored by ``benchmarks/nas_proxies.py`` (train on k of them, rank the others), the
feature set ``effective+az_nas`` adds their AZ-NAS proxy ranks for every
method (the GIN reads them next to its graph readout), and the weak labels of
``cascade+weak`` come from the aggregated AZ-NAS score. The ranks are taken over
all scored architectures (no accuracy is used).
"""

import argparse
import json
import os.path as osp
import sys
import time

import numpy as np
from scipy import stats

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402

from mmcompress.nas import NB201Space, NB201Table, aggregate_ranks  # noqa: E402
from mmcompress.nas.benchmark_table import DATASETS  # noqa: E402
from mmcompress.nas.predictor import PREDICTORS  # noqa: E402
from mmcompress.nas.score_cache import load_score_cache  # noqa: E402
from mmcompress.nas.scoring import AZ_NAS_KEYS, nan_to_neginf  # noqa: E402

VARIANTS = {
    'cascade+weak': ('cascade', True),
    'cascade': ('cascade', False),
    'svr': ('svr', False),
    'mlp': ('mlp', False),
    'rf': ('rf', False),
    'gin': ('gin', False),
}
"""Row label -> (predictor, with weak labels)."""


def features(table, name):
    """Feature rows and GIN op-index rows of every table architecture."""
    space = NB201Space()
    archs = [tuple(int(v) for v in c) for c in table.codes]
    if name == 'onehot':
        return np.stack([space.encode(a) for a in archs]), np.array(archs)
    live = np.array([space.live_arch(a) for a in archs])
    return np.stack([space.effective_encode(a) for a in archs]), live


def proxy_features(path):
    """Indices of the archs scored with AZ-NAS in ``path`` and their features:
    the rank (fraction) of each AZ-NAS proxy and of the aggregated score."""
    cache = load_score_cache(path)
    idx = sorted(i for i, r in cache.items() if all(k in r for k in AZ_NAS_KEYS))
    cols = {k: [cache[i][k] for i in idx] for k in AZ_NAS_KEYS}
    ranks = [stats.rankdata(nan_to_neginf(cols[k])[0]) / len(idx) for k in AZ_NAS_KEYS]
    agg = stats.rankdata(aggregate_ranks(cols)) / len(idx)
    return np.asarray(idx), np.column_stack(ranks + [agg])


def run(method, x, y, k, sample, weak, weak_src=None):
    """Kendall tau on the archs outside a random training draw of ``k``."""
    rng = np.random.default_rng(1000 + sample)
    perm = rng.permutation(len(y))
    train, rest = perm[:k], perm[k:]
    kw = {}
    if weak:
        unl = rng.choice(rest, min(300, len(rest) // 2), replace=False)
        src = None if weak_src is None else weak_src[unl]
        kw = dict(x_unlabelled=x[unl], weak=src)
    model = PREDICTORS[method](seed=sample).fit(x[train], y[train], **kw)
    return stats.kendalltau(model.predict(x[rest]), y[rest])[0]


def markdown(rows, num_archs):
    """Table of the rows: one line per (k, inputs), one column per method, the
    best mean in bold."""
    methods = list(dict.fromkeys(r['method'] for r in rows))
    lines = [
        f'| k | inputs ({num_archs} archs, {num_archs} - k held out) | '
        + ' | '.join(methods)
        + ' |',
        '|---' * (2 + len(methods)) + '|',
    ]
    for k, fname in dict.fromkeys((r['k'], r['features']) for r in rows):
        cell = {r['method']: r for r in rows if (r['k'], r['features']) == (k, fname)}
        best = max(r['tau_mean'] for r in cell.values())
        vals = []
        for m in methods:
            if m not in cell:
                vals.append('–')
                continue
            text = f'{cell[m]["tau_mean"]:.3f} ± {cell[m]["tau_std"]:.3f}'
            vals.append(f'**{text}**' if cell[m]['tau_mean'] == best else text)
        lines.append(f'| {k} | {fname} | ' + ' | '.join(vals) + ' |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ks', type=int, nargs='+', default=[50, 100, 200])
    parser.add_argument('--samples', type=int, default=5)
    parser.add_argument('--dataset', default='cifar10', choices=DATASETS)
    parser.add_argument('--json')
    parser.add_argument(
        '--features',
        nargs='+',
        default=['onehot', 'effective'],
        choices=['onehot', 'effective', 'effective+az_nas'],
        help='effective+az_nas needs --proxy-cache',
    )
    parser.add_argument(
        '--methods', nargs='+', default=list(VARIANTS), choices=list(VARIANTS)
    )
    parser.add_argument(
        '--out', help='markdown page: replace its block --block by the table'
    )
    parser.add_argument('--block', default='nas-predictor')
    parser.add_argument(
        '--proxy-cache',
        help='scores of benchmarks/nas_proxies.py: restrict to the archs scored '
        'there; weak labels of cascade+weak and the effective+az_nas features '
        'from their AZ-NAS scores',
    )
    args = parser.parse_args()
    if 'effective+az_nas' in args.features and not args.proxy_cache:
        parser.error('--features effective+az_nas needs --proxy-cache')
    table = NB201Table()
    y = table.acc[:, DATASETS.index(args.dataset)]
    plain = [f for f in args.features if f != 'effective+az_nas']
    feats = {name: features(table, name) for name in plain}
    weak_src = None
    if args.proxy_cache:
        idx, proxy_feats = proxy_features(args.proxy_cache)
        y, weak_src = y[idx], proxy_feats[:, -1]
        feats = {name: (x[idx], g[idx]) for name, (x, g) in feats.items()}
        if 'effective+az_nas' in args.features:
            x, g = (v[idx] for v in features(table, 'effective'))
            feats['effective+az_nas'] = (
                np.column_stack([x, proxy_feats]),
                np.column_stack([g, proxy_feats]),
            )
        print(f'{len(idx)} architectures with AZ-NAS scores in {args.proxy_cache}')
    variants = [(m, *VARIANTS[m]) for m in args.methods]
    rows = []
    for k in args.ks:
        for fname, (x, graph) in feats.items():
            for label, method, weak in variants:
                t0 = time.perf_counter()
                inp = graph if method == 'gin' else x
                taus = [
                    run(method, inp, y, k, s, weak, weak_src)
                    for s in range(args.samples)
                ]
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
                    f'k={k:4d} {fname:16s} {label:13s} tau '
                    f'{r["tau_mean"]:.3f} +- {r["tau_std"]:.3f} '
                    f'({r["seconds"]:.1f} s/run)',
                    flush=True,
                )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                dict(dataset=args.dataset, samples=args.samples, rows=rows), f, indent=1
            )
    if args.out:
        write_block(args.out, args.block, markdown(rows, len(y)))


if __name__ == '__main__':
    main()
