"""Fashion-MNIST top-1 of the small ViT with LayerNorm, TokenBN and UN.

Each run trains ``configs/un/mmpretrain/vit_{ln,bn,un}_fmnist.py`` from scratch
with mmengine's Runner (the code path of the stock ``tools/train.py``) on a
class-balanced subset of the 55k training split (``--subset 0``: all of it)
for a few epochs, then tests the last checkpoint on the official 10k test
split. For UN and TokenBN the test is also run on the folded model
(:func:`fuse_un`), and the largest logit difference between folded and
unfolded models is recorded. ``--val`` also tests on the 5k hold-out after
every epoch (the learning curve). UN's ``warmup_iters`` is ``--un-warmup``
times the run's iteration count.

Usage::

    python benchmarks/un_accuracy.py --seeds 0 1 2 --subset 5000 --epochs 5 \
        --out docs/models/unified_norm.md

Raw results go to ``<out>_accuracy.json`` (appended per run, ``--resume``
skips runs of the same schedule already there); the table is the block
``un_accuracy`` of ``--out`` and shows the runs of the current schedule.
"""

import argparse
import json
import math
import os
import os.path as osp
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from machine_load import loadavg  # noqa: E402

NORMS = dict(LN='ln', TokenBN='bn', UN='un')


def train_iters(cfg: Config, epochs: int) -> int:
    """Iterations of ``epochs`` over the configured training set (the last
    batch of an epoch is kept, as mmengine's default ``drop_last=False``)."""
    from mmcompress.datasets import FashionMNISTDataset

    data_cfg = cfg.train_dataloader.dataset.copy()
    data_cfg.pop('type')
    size = len(FashionMNISTDataset(**dict(data_cfg, pipeline=[])))
    return epochs * math.ceil(size / cfg.train_dataloader.batch_size)


def run_config(norm: str, seed: int, args) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, f'configs/un/mmpretrain/vit_{norm}_fmnist.py'))
    cfg.work_dir = osp.join(ROOT, 'work_dirs', 'un_accuracy', f'{norm}_s{seed}')
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.train_dataloader.dataset.subset_size = args.subset or None
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.train_cfg.max_epochs = args.epochs
    cfg.train_cfg.val_interval = 1 if args.val else args.epochs + 1
    cfg.param_scheduler[1].end = args.epochs
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=args.epochs)
    cfg.default_hooks.logger.interval = 20
    if norm == 'un':
        iters = train_iters(cfg, args.epochs)
        cfg.model.backbone.norm_cfg.warmup_iters = int(args.un_warmup * iters)
    return cfg


def test_top1(runner) -> float:
    metrics = runner.test()
    return float(metrics['accuracy/top1'])


def run_one(norm: str, seed: int, args) -> dict:
    from mmcompress.models.norms import fuse_un

    cfg = run_config(norm, seed, args)
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    result = dict(norm=norm, seed=seed, subset=args.subset, epochs=args.epochs)
    result['train_s'] = round(time.time() - start, 1)
    hub = runner.message_hub
    result['iters'] = runner.iter
    result['iter_s_median'] = round(
        statistics.median(hub.get_scalar('train/time').data[0]), 4
    )
    result['train_loss_last50'] = round(
        statistics.mean(hub.get_scalar('train/loss').data[0][-50:]), 4
    )
    if args.val:
        result['val_top1'] = [
            round(v, 2) for v in hub.get_scalar('val/accuracy/top1').data[0]
        ]
    result['top1'] = test_top1(runner)
    if norm == 'un':
        result['un_skips'] = int(runner.model.backbone.layers[0].ln1.skip_counter)
        result['warmup_iters'] = cfg.model.backbone.norm_cfg.warmup_iters
    if norm in ('un', 'bn'):
        model = runner.model.eval()
        x = torch.randn(8, 1, 28, 28)
        with torch.no_grad():
            ref = model(x, mode='tensor')
            fuse_un(model, (x,))
            result['fold_max_diff'] = float((model(x, mode='tensor') - ref).abs().max())
        result['top1_folded'] = test_top1(runner)
    return result


def same_schedule(result: dict, args) -> bool:
    return (result['subset'], result['epochs']) == (args.subset, args.epochs)


def table(results: list, args) -> str:
    lines = [
        '| norm | seeds | test top-1 (mean ± std) | per seed | folded top-1 | '
        'max \\|folded − unfolded\\| logit | hold-out top-1 by epoch (seed mean) |',
        '|---|---|---|---|---|---|---|',
    ]
    for name, norm in NORMS.items():
        runs = sorted(
            (r for r in results if r['norm'] == norm and same_schedule(r, args)),
            key=lambda r: r['seed'],
        )
        if not runs:
            continue
        curves = [r['val_top1'] for r in runs if 'val_top1' in r]
        curve = (
            ', '.join(f'{statistics.mean(v):.1f}' for v in zip(*curves))
            if len(curves) == len(runs)
            else '-'
        )
        top = [r['top1'] for r in runs]
        std = statistics.stdev(top) if len(top) > 1 else 0.0
        folded = ', '.join(
            f'{r["top1_folded"]:.2f}' for r in runs if 'top1_folded' in r
        )
        diff = max((r.get('fold_max_diff', 0) for r in runs), default=0)
        lines.append(
            f'| {name} | {len(runs)} | {statistics.mean(top):.2f} ± {std:.2f} | '
            f'{", ".join(f"{t:.2f}" for t in top)} | {folded or "-"} | '
            f'{f"{diff:.1e}" if folded else "-"} | {curve} |'
        )
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--norms', nargs='+', default=list(NORMS.values()))
    parser.add_argument(
        '--subset',
        type=int,
        default=5000,
        help='class-balanced training subset size (0: the whole 55k split)',
    )
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument(
        '--val',
        action='store_true',
        help='test on the 5k hold-out after every epoch (the learning curve)',
    )
    parser.add_argument(
        '--un-warmup',
        type=float,
        default=0.1,
        help='UN warmup_iters as a fraction of the run',
    )
    parser.add_argument('--out', default='docs/models/unified_norm.md')
    parser.add_argument('--resume', action='store_true')
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error('--epochs must be >= 2 (one warm-up epoch, then the cosine)')
    torch.set_num_threads(1)
    raw = osp.splitext(args.out)[0] + '_accuracy.json'
    results = json.load(open(raw)) if args.resume and osp.isfile(raw) else []
    done = {(r['norm'], r['seed']) for r in results if same_schedule(r, args)}
    for seed in args.seeds:
        for norm in args.norms:
            if (norm, seed) in done:
                continue
            before = loadavg()
            result = run_one(norm, seed, args)
            result['loadavg'] = [before, loadavg()]
            results.append(result)
            os.makedirs(osp.dirname(osp.abspath(raw)), exist_ok=True)
            with open(raw, 'w') as handle:
                json.dump(results, handle, indent=1)
            print(json.dumps(result), flush=True)
            write_block(args.out, 'un_accuracy', table(results, args))


if __name__ == '__main__':
    main()
