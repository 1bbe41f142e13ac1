"""One-shot NB201 supernet ranking on Fashion-MNIST: uniform single-path training
vs candidate enhancement + progressive branches, against stand-alone training.

A fixed uniform sample of NB201 cells (``--archs``, ``--sample-seed``) is ranked by
(a) stand-alone training of each cell (``--method standalone``; one JSON line per
architecture in ``--standalone``, resumable), (b) a supernet trained with uniform
single-path sampling, (c) the seed method (``--width-mult`` wider candidates,
``--stages`` branch counts). Kendall tau-b of the supernet ranking against the
stand-alone accuracies and against the NB201 CIFAR-10 table, on the same sample.
``--method summary`` aggregates supernet runs (``--runs``, several seeds) against
the stand-alone table: tau per run, mean and std per method, the per-seed
progressive - uniform gap with a paired bootstrap over the architectures, and the
tau between two stand-alone tables (``--standalone-repeat``, another ``--seed``).

    python benchmarks/nas_supernet.py --method standalone
    python benchmarks/nas_supernet.py --method uniform \
        --json docs/nas/supernet_uniform_seed0.json
    python benchmarks/nas_supernet.py --method progressive --width-mult 2 \
        --stages 1 2 4 --json docs/nas/supernet_progressive_seed0.json
    python benchmarks/nas_supernet.py --method summary \
        --runs docs/nas/supernet_*_seed*.json
"""

import argparse
import json
import os
import os.path as osp
import time

import numpy as np
import torch
from scipy import stats

from mmcompress.datasets.fashion_mnist_io import load_fashion_mnist, stratified_indices
from mmcompress.nas import NB201Space, NB201Table
from mmcompress.nas.supernet import (
    NB201Supernet,
    branch_of,
    cost_groups,
    evaluate_subnet,
    train_supernet,
)


def data(args):
    """Training batch sampler, BN-calibration batches, held-out images/labels."""

    def prep(images):
        x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)
        x = torch.nn.functional.pad(x.unsqueeze(1), (2, 2, 2, 2))  # 32 x 32
        x = torch.nn.functional.avg_pool2d(x, args.pool) if args.pool > 1 else x
        return (x - 0.286) / 0.353

    tr_img, tr_lab = load_fashion_mnist('train')
    te_img, te_lab = load_fashion_mnist('test')
    tr = stratified_indices(tr_lab, args.train_images, 0)
    te = stratified_indices(te_lab, args.eval_images, 0)
    x_tr, y_tr = prep(tr_img[tr]), torch.from_numpy(tr_lab[tr])
    x_te, y_te = prep(te_img[te]), torch.from_numpy(te_lab[te])

    def batches(rng):
        idx = torch.from_numpy(rng.integers(0, len(x_tr), args.batch_size))
        return x_tr[idx], y_tr[idx]

    calib = [x_tr[i * 128 : (i + 1) * 128] for i in range(args.calib_batches)]
    return batches, calib, x_te, y_te


def sample_archs(args):
    space, table = NB201Space(), NB201Table()
    order = np.random.default_rng(args.sample_seed).permutation(len(table))
    return [tuple(int(v) for v in table.codes[i]) for i in order[: args.archs]], space


def load_standalone(path):
    """Stand-alone rows of the cache ``path`` keyed by architecture string.

    Args:
        path (str): JSON-lines file written by ``--method standalone``.

    Returns:
        dict[str, dict]: ``{arch: {'arch', 'acc', 'steps', 'seed', 'seconds'}}``.
    """
    if not osp.exists(path):
        raise FileNotFoundError(
            f'{path}: no stand-alone table; run --method standalone first'
        )
    with open(path) as f:
        return {r['arch']: r for r in map(json.loads, f)}


def standalone(args, archs, space, batches, calib, x_te, y_te):
    done = load_standalone(args.standalone) if osp.exists(args.standalone) else {}
    other = {
        (r['steps'], r['seed'])
        for r in done.values()
        if (r['steps'], r['seed']) != (args.standalone_steps, args.seed)
    }
    if other:
        raise ValueError(
            f'{args.standalone} holds rows with (steps, seed) {sorted(other)}, not '
            f'({args.standalone_steps}, {args.seed}); pass another --standalone'
        )
    os.makedirs(osp.dirname(osp.abspath(args.standalone)), exist_ok=True)
    with open(args.standalone, 'a') as f:
        for arch in archs:
            if space.to_str(arch) in done:
                continue
            torch.manual_seed(args.seed)
            net = NB201Supernet(args.C, args.N, 10, in_channels=1)
            t0 = time.perf_counter()
            train_supernet(
                net,
                batches,
                args.standalone_steps,
                seed=args.seed,
                sample=lambda rng, a=arch: a,
            )
            acc = evaluate_subnet(net, arch, calib, x_te, y_te)
            rec = dict(
                arch=space.to_str(arch),
                acc=acc,
                steps=args.standalone_steps,
                seed=args.seed,
                seconds=time.perf_counter() - t0,
            )
            f.write(json.dumps(rec) + '\n')
            f.flush()
            print(f'{len(done) + 1}/{len(archs)} {acc:.2f}', flush=True)
            done[rec['arch']] = rec


def kendall(a, b) -> float:
    """Kendall tau-b of two sequences."""
    return float(stats.kendalltau(a, b)[0])


def connected(space, key) -> bool:
    """Whether the cell ``key`` has an input-to-output path of non-``none`` ops
    (a disconnected cell outputs zeros: chance accuracy in every ranking)."""
    return any(space.live_arch(space.from_str(key)))


def pair_concordance(acc, ref, pairs) -> float:
    """(concordant - discordant) / compared over the architecture pairs ``i < j``
    with ``pairs[i, j]`` true, pairs tied in either ranking left out."""
    i, j = np.triu_indices(len(acc), 1)
    sign = np.sign(acc[i] - acc[j]) * np.sign(ref[i] - ref[j])
    sign = sign[pairs[i, j] & (sign != 0)]
    return float(sign.mean()) if len(sign) else float('nan')


def summarize(runs, alone, repeat=None, bootstrap=2000, boot_seed=0, groups=4):
    """Aggregate supernet runs against a stand-alone table.

    Args:
        runs (list[dict]): Per-run results of ``--method uniform/progressive``
            (``method``, ``seed``, ``archs``, ``accs``), all on one sample.
        alone (dict[str, dict]): Stand-alone rows (:func:`load_standalone`).
        repeat (dict[str, dict], optional): A second stand-alone table (another
            training seed) to measure the noise of the reference; when it holds
            every architecture of the sample, each run is also ranked against
            it (``tau_repeat``) and against the mean accuracy of the two tables
            (``tau_mean_reference``).
        bootstrap (int): Resamples of the architectures for the gap interval.
        boot_seed (int): Seed of the resampling.
        groups (int): Live-conv-cost groups (:func:`cost_groups`) for the
            split of the pairs: the progressive supernet with ``groups``
            branches ranks a cross-group pair with two different weight sets.

    Returns:
        dict: ``n`` (architectures in the stand-alone table), ``n_connected``,
        ``tau_standalone_vs_nb201``, ``runs`` (method, seed, tau,
        tau_connected, tau_nb201_c10: against the NB201 CIFAR-10 table,
        conc_same / conc_cross: :func:`pair_concordance` with the stand-alone
        ranking over the pairs in one / two cost groups), ``methods`` (per
        method: seeds, each field per seed, ``mean`` and ``std`` (ddof 1) of
        each field), and where both methods ran with
        common seeds ``gap`` (progressive - uniform per seed, the seeds it is
        positive on, the mean and the 2.5/97.5 % bootstrap quantiles of the
        seed-mean gap over resampled architectures); ``reference`` with
        ``repeat``.
    """
    space = NB201Space()
    keys = runs[0]['archs']
    for r in runs:
        if r['archs'] != keys:
            raise ValueError(
                f'{r["method"]} seed {r["seed"]}: another architecture sample'
            )
    idx = [i for i, k in enumerate(keys) if k in alone]
    ref = np.array([alone[keys[i]]['acc'] for i in idx])
    conn = np.array([connected(space, keys[i]) for i in idx])
    bounds = cost_groups(groups)
    table = NB201Table()
    c10 = np.array([table.accuracy(space.from_str(keys[i])) for i in idx])
    accs = {(r['method'], r['seed']): np.array(r['accs'])[idx] for r in runs}
    res = dict(
        n=len(idx),
        n_connected=int(conn.sum()),
        tau_standalone_vs_nb201=kendall(ref, c10),
        runs=[],
        methods={},
    )
    group = np.array([branch_of(space.from_str(keys[i]), bounds) for i in idx])
    same = group[:, None] == group[None, :]
    fields = ('tau', 'tau_connected', 'tau_nb201_c10', 'conc_same', 'conc_cross')
    # a repeat covering the whole sample: also rank against it and the mean
    rep = None
    if repeat is not None and all(keys[i] in repeat for i in idx):
        rep = np.array([repeat[keys[i]]['acc'] for i in idx])
        fields += ('tau_repeat', 'tau_mean_reference')
    for (method, seed), acc in sorted(accs.items()):
        vals = (
            kendall(acc, ref),
            kendall(acc[conn], ref[conn]),
            kendall(acc, c10),
            pair_concordance(acc, ref, same),
            pair_concordance(acc, ref, ~same),
        )
        if rep is not None:
            vals += (kendall(acc, rep), kendall(acc, (ref + rep) / 2))
        res['runs'].append(dict(method=method, seed=seed, **dict(zip(fields, vals))))
        m = res['methods'].setdefault(method, dict(seeds=[], **{f: [] for f in fields}))
        m['seeds'].append(seed)
        for f, v in zip(fields, vals):
            m[f].append(v)
    for m in res['methods'].values():
        m['mean'] = {f: float(np.mean(m[f])) for f in fields}
        m['std'] = {
            f: float(np.std(m[f], ddof=1)) if len(m[f]) > 1 else 0.0 for f in fields
        }
    seeds = sorted(
        {s for m, s in accs if m == 'uniform'}
        & {s for m, s in accs if m == 'progressive'}
    )
    if seeds:
        pairs = [(accs['progressive', s], accs['uniform', s]) for s in seeds]

        def mean_gap(sel):
            return float(
                np.mean(
                    [
                        kendall(p[sel], ref[sel]) - kendall(u[sel], ref[sel])
                        for p, u in pairs
                    ]
                )
            )

        rng = np.random.default_rng(boot_seed)
        boots = np.array(
            [mean_gap(rng.integers(0, len(idx), len(idx))) for _ in range(bootstrap)]
        )
        boots = boots[np.isfinite(boots)]  # a resample of one distinct value
        per_seed = [kendall(p, ref) - kendall(u, ref) for p, u in pairs]
        res['gap'] = dict(
            seeds=seeds,
            per_seed=per_seed,
            positive_seeds=[s for s, d in zip(seeds, per_seed) if d > 0],
            mean=float(np.mean(per_seed)),
            bootstrap=len(boots),
            ci95=[float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            p_not_positive=float(np.mean(boots <= 0)),
        )
    if repeat is not None:
        both = [keys[i] for i in idx if keys[i] in repeat]
        a = np.array([alone[k]['acc'] for k in both])
        b = np.array([repeat[k]['acc'] for k in both])
        c = np.array([connected(space, k) for k in both])
        res['reference'] = dict(
            n=len(both),
            tau=kendall(a, b),
            tau_connected=kendall(a[c], b[c]),
            seeds=sorted(
                {alone[k]['seed'] for k in both} | {repeat[k]['seed'] for k in both}
            ),
        )
    return res


def print_summary(res):
    """One line per run and per method, then the gap and the reference noise."""
    print(
        f'stand-alone n = {res["n"]} ({res["n_connected"]} connected), '
        f'vs NB201 C-10 {res["tau_standalone_vs_nb201"]:.3f}'
    )
    for r in res['runs']:
        print(
            f'{r["method"]} seed {r["seed"]}: tau {r["tau"]:.3f} '
            f'(connected {r["tau_connected"]:.3f}), '
            f'vs NB201 C-10 {r["tau_nb201_c10"]:.3f}; pair concordance same / '
            f'cross cost group {r["conc_same"]:.3f} / {r["conc_cross"]:.3f}'
            + (
                f'; vs the repeat {r["tau_repeat"]:.3f}, vs the mean of both '
                f'{r["tau_mean_reference"]:.3f}'
                if 'tau_repeat' in r
                else ''
            )
        )
    for name, m in res['methods'].items():
        mean, std = m['mean'], m['std']
        print(
            f'{name} over seeds {m["seeds"]}: '
            + ', '.join(f'{f} {mean[f]:.3f} +- {std[f]:.3f}' for f in mean)
        )
    if 'gap' in res:
        g = res['gap']
        print(
            f'progressive - uniform: {", ".join(f"{d:+.3f}" for d in g["per_seed"])} '
            f'(seeds {g["seeds"]}, positive on {g["positive_seeds"]}); '
            f'mean {g["mean"]:+.3f}, '
            f'95 % bootstrap over archs [{g["ci95"][0]:+.3f}, {g["ci95"][1]:+.3f}], '
            f'P(gap <= 0) {g["p_not_positive"]:.3f}'
        )
    if 'reference' in res:
        r = res['reference']
        print(
            f'stand-alone seeds {r["seeds"]} vs each other: tau {r["tau"]:.3f} '
            f'(connected {r["tau_connected"]:.3f}), n = {r["n"]}'
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        '--method', choices=['standalone', 'uniform', 'progressive', 'summary']
    )
    p.add_argument('--archs', type=int, default=40)
    p.add_argument('--sample-seed', type=int, default=0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--C', type=int, default=8)
    p.add_argument('--N', type=int, default=1)
    p.add_argument('--train-images', type=int, default=10000)
    p.add_argument('--eval-images', type=int, default=2000)
    p.add_argument(
        '--pool',
        type=int,
        default=2,
        help='average-pool the (zero-padded 32 x 32) input',
    )
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--calib-batches', type=int, default=4)
    p.add_argument('--steps', type=int, default=3000, help='supernet steps')
    p.add_argument('--standalone-steps', type=int, default=400)
    p.add_argument('--width-mult', type=int, default=1)
    p.add_argument('--stages', type=int, nargs='+', default=[1])
    p.add_argument('--standalone', default='docs/nas/supernet_standalone.jsonl')
    p.add_argument('--json')
    p.add_argument('--runs', nargs='+', help='summary: per-run JSON files')
    p.add_argument(
        '--standalone-repeat', help='summary: a stand-alone table of another seed'
    )
    p.add_argument('--bootstrap', type=int, default=2000)
    p.add_argument(
        '--groups', type=int, default=4, help='summary: cost groups of the pairs'
    )
    args = p.parse_args()
    if args.method == 'summary':
        if not args.runs:
            p.error('--method summary needs --runs')
        runs = [json.load(open(r)) for r in args.runs]
        repeat = args.standalone_repeat
        res = summarize(
            runs,
            load_standalone(args.standalone),
            load_standalone(repeat) if repeat else None,
            args.bootstrap,
            groups=args.groups,
        )
        print_summary(res)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(dict(res, runs_files=args.runs), f, indent=1)
        return res
    torch.set_num_threads(1)
    archs, space = sample_archs(args)
    batches, calib, x_te, y_te = data(args)
    if args.method == 'standalone':
        return standalone(args, archs, space, batches, calib, x_te, y_te)
    torch.manual_seed(args.seed)
    net = NB201Supernet(args.C * args.width_mult, args.N, 10, in_channels=1)
    stages = [1] if args.method == 'uniform' else args.stages
    t0 = time.perf_counter()
    log = train_supernet(net, batches, args.steps, stages=stages, seed=args.seed)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    accs = [evaluate_subnet(net, a, calib, x_te, y_te) for a in archs]
    eval_s = time.perf_counter() - t0
    rows = load_standalone(args.standalone)
    alone = {k: r['acc'] for k, r in rows.items()}
    keys = [space.to_str(a) for a in archs]
    have = [i for i, k in enumerate(keys) if k in alone]
    used = [rows[keys[i]] for i in have]
    table = NB201Table()
    c10 = [table.accuracy(a) for a in archs]
    res = dict(
        vars(args),
        stages=stages,
        standalone_steps=sorted({r['steps'] for r in used}),
        standalone_seed=sorted({r['seed'] for r in used}),
        train_seconds=train_s,
        eval_seconds=eval_s,
        loadavg=open('/proc/loadavg').read().split()[:3],
        tau_standalone=stats.kendalltau(
            [accs[i] for i in have], [alone[keys[i]] for i in have]
        )[0],
        n_standalone=len(have),
        tau_nb201_c10=stats.kendalltau(accs, c10)[0],
        tau_standalone_vs_nb201=stats.kendalltau(
            [alone[keys[i]] for i in have], [c10[i] for i in have]
        )[0],
        archs=keys,
        accs=accs,
        loss_log=log,
    )
    print(
        f'{args.method}: tau vs stand-alone {res["tau_standalone"]:.3f} '
        f'(n={len(have)}), vs NB201 C-10 {res["tau_nb201_c10"]:.3f}; '
        f'stand-alone vs NB201 {res["tau_standalone_vs_nb201"]:.3f}',
        flush=True,
    )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
