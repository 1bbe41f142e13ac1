"""One-shot NB201 supernet ranking on Fashion-MNIST: uniform single-path training
vs candidate enhancement + progressive branches, against stand-alone training.

A fixed uniform sample of NB201 cells (``--archs``, ``--sample-seed``) is ranked by
(a) stand-alone training of each cell (``--method standalone``; one JSON line per
architecture in ``--standalone``, resumable), (b) a supernet trained with uniform
single-path sampling, (c) the seed method (``--width-mult`` wider candidates,
``--stages`` branch counts). Kendall tau-b of the supernet ranking against the
stand-alone accuracies and against the NB201 CIFAR-10 table, on the same sample.

    python benchmarks/nas_supernet.py --method standalone
    python benchmarks/nas_supernet.py --method uniform \
        --json docs/nas/supernet_uniform.json
    python benchmarks/nas_supernet.py --method progressive --width-mult 2 \
        --stages 1 2 4 --json docs/nas/supernet_progressive.json
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
from mmcompress.nas.supernet import NB201Supernet, evaluate_subnet, train_supernet


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


def standalone(args, archs, space, batches, calib, x_te, y_te):
    done = {}
    if osp.exists(args.standalone):
        with open(args.standalone) as f:
            done = {r['arch']: r for r in map(json.loads, f)}
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
                seconds=time.perf_counter() - t0,
            )
            f.write(json.dumps(rec) + '\n')
            f.flush()
            print(f'{len(done) + 1}/{len(archs)} {acc:.2f}', flush=True)
            done[rec['arch']] = rec


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--method', choices=['standalone', 'uniform', 'progressive'])
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
    args = p.parse_args()
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
    accs = [evaluate_subnet(net, a, calib, x_te, y_te) for a in archs]
    with open(args.standalone) as f:
        alone = {r['arch']: r['acc'] for r in map(json.loads, f)}
    keys = [space.to_str(a) for a in archs]
    have = [i for i, k in enumerate(keys) if k in alone]
    table = NB201Table()
    c10 = [table.accuracy(a) for a in archs]
    res = dict(
        vars(args),
        stages=stages,
        train_seconds=train_s,
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
