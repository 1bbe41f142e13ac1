"""Fashion-MNIST: an AZ-NAS-searched mbv2 network vs a hand-made one of equal FLOPs.

1. ``tools/search.py --space mbv2 --proxy az_nas`` under ``--max-flops``
   (resumable: the search keeps its state in ``<work-dir>/search``).
2. The hand-made baseline follows MobileNetV2's own hand design in every stage
   (3x3 depthwise kernel, expansion 6; Sandler et al., 2018); only the per-stage
   depths (1-3) are set, to the setting whose FLOPs are the closest to the
   searched network's (ties: the smaller depths, read as a tuple). It must lie
   within ``--tolerance`` (relative) of them and differ from the searched
   architecture. The choice uses FLOPs alone, before any network is trained.
3. Both networks are trained with mmpretrain's stock ``tools/train.py`` (the
   ``.mim`` copy shipped in the wheel) from the config ``tools/search.py``
   writes, the same schedule for both, once per seed (``randomness.seed``).
4. Test top-1 of the last checkpoint on the official 10k test split.

Usage::

    python benchmarks/nas_fmnist_search.py --max-flops 10e6 --steps 200 \\
        --seeds 0 1 2 --epochs 3 --subset 10000 --out docs/nas/fmnist_search.md

Raw numbers go to the ``.json`` next to ``--out``, rewritten after every run
together with the table (the ``nas-fmnist-search`` block of ``--out``); a rerun
of the same command skips the runs that file already holds.
"""

import argparse
import itertools
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402

NETS = ('searched', 'hand-made')
HANDMADE_KERNEL, HANDMADE_EXPAND = 3, 6  # MobileNetV2's choice in every stage
TRAIN_SIZE = 55000  # the 'train' split: 60k minus the 5k hold-out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line of the benchmark; rejects settings that cannot run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--max-flops', type=float, default=10e6, help='search budget')
    p.add_argument('--steps', type=int, default=200, help='architectures scored')
    p.add_argument('--search-seed', type=int, default=0)
    p.add_argument('--tolerance', type=float, default=0.03, help='relative FLOPs')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument(
        '--subset', type=int, default=0, help='class-balanced training subset (0: 55k)'
    )
    p.add_argument('--nets', nargs='+', default=list(NETS), choices=NETS)
    p.add_argument('--work-dir', default='work_dirs/nas_fmnist_search')
    p.add_argument('--out', help='markdown page for the table (json next to it)')
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f'--steps must be >= 1, got {args.steps}')
    if args.epochs < 2:
        p.error(
            f'--epochs must be >= 2 (one warm-up epoch, then the cosine), got '
            f'{args.epochs}'
        )
    if not 0 < args.tolerance < 1:
        p.error(f'--tolerance must be in (0, 1), got {args.tolerance}')
    if not 0 <= args.subset <= TRAIN_SIZE:
        p.error(f'--subset must be in [0, {TRAIN_SIZE}], got {args.subset}')
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f'--seeds repeats a seed: {args.seeds}')
    return args


def handmade_baseline(space, searched, tolerance: float) -> Tuple[tuple, int]:
    """The hand-made architecture of FLOPs closest to ``searched``.

    Args:
        space (MobileNetSpace): The search space.
        searched (Sequence[tuple]): The searched architecture.
        tolerance (float): Largest allowed ``|flops - searched flops| / searched
            flops``.

    Returns:
        tuple: ``(arch, flops)`` of the baseline: kernel 3 and expansion 6 in
        every stage, the depths closest in FLOPs (ties: the smaller depths).

    Raises:
        ValueError: No depth setting other than ``searched`` lies within
            ``tolerance``.
    """
    from mmcompress.nas.mbv2_space import DEPTHS

    searched = space.check(searched)
    target = space.flops(searched)
    best = None
    for depths in itertools.product(DEPTHS, repeat=len(space.widths)):
        arch = tuple((d, HANDMADE_KERNEL, HANDMADE_EXPAND) for d in depths)
        if arch == searched:
            continue
        key = (abs(space.flops(arch) - target), depths)
        if best is None or key < best[0]:
            best = (key, arch)
    arch = best[1]
    flops = space.flops(arch)
    if abs(flops - target) > tolerance * target:
        raise ValueError(
            f'the closest hand-made network {space.to_str(arch)} has {flops} FLOPs, '
            f'{abs(flops - target) / target:.1%} away from the searched '
            f'{space.to_str(searched)} ({target} FLOPs); tolerance {tolerance:.1%}'
        )
    return arch, flops


def run_search(args, work: str) -> Dict:
    """``tools/search.py --space mbv2 --proxy az_nas`` (resumes); its result."""
    cmd = [
        sys.executable,
        'tools/search.py',
        '--space',
        'mbv2',
        '--proxy',
        'az_nas',
        '--steps',
        str(args.steps),
        '--max-flops',
        str(args.max_flops),
        '--seed',
        str(args.search_seed),
        '--work-dir',
        osp.join(work, 'search'),
        '--no-progress',
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(osp.join(work, 'search', 'search_result.json')) as f:
        return json.load(f)


def net_config(searched_config: str, space, arch, out: str) -> str:
    """The searched config with its backbone set to ``arch``, written to ``out``."""
    from mmengine.config import Config

    cfg = Config.fromfile(searched_config)
    cfg.model.backbone.update(space.backbone_cfg(arch))
    cfg.model.head.in_channels = space.build(arch, num_classes=0).out_channels
    cfg.dump(out)
    return out


def train_options(seed: int, epochs: int, subset: int) -> List[str]:
    """``--cfg-options`` of one run: seed, schedule, no hold-out validation.

    The cosine phase of ``fmnist_sgd.py`` (``param_scheduler[1]``) ends with
    the run; the hold-out validation only picks a "best" checkpoint, which is
    not used (the last one is tested), so it is skipped; the data loader runs
    in the training process (one CPU process per run).
    """
    opts = [
        f'randomness.seed={seed}',
        f'train_cfg.max_epochs={epochs}',
        f'param_scheduler.1.end={epochs}',
        f'train_cfg.val_interval={epochs + 1}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
    ]
    if subset:
        opts.append(f'train_dataloader.dataset.subset_size={subset}')
    return opts


def train(config: str, work_dir: str, options: Sequence[str]) -> str:
    """Train with mmpretrain's stock ``tools/train.py``; the last checkpoint."""
    from mmcompress.testing import stock_tool

    cmd = [sys.executable, stock_tool('mmpretrain'), config, '--work-dir', work_dir]
    subprocess.run(
        cmd + ['--cfg-options', *options],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def top1_on_test_split(config: str, checkpoint: str) -> float:
    """Top-1 (%) of ``checkpoint`` on the official 10k test split."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmcompress  # noqa: F401

    cfg = Config.fromfile(config)
    cfg.work_dir = osp.join(osp.dirname(checkpoint), 'test')
    cfg.load_from = checkpoint
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    return float(Runner.from_cfg(cfg).test()['accuracy/top1'])


def num_params(space, arch) -> int:
    """Parameters of the 10-class network of ``arch`` (the trained model)."""
    return sum(p.numel() for p in space.build(arch).parameters())


def summary(accs: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = statistics.mean(accs)
    return mean, statistics.stdev(accs) if len(accs) > 1 else 0.0


def command(args) -> str:
    """The command line that reproduces the table."""
    return (
        'python benchmarks/nas_fmnist_search.py '
        f'--max-flops {args.max_flops / 1e6:g}e6 '
        f'--steps {args.steps} --search-seed {args.search_seed} '
        f'--tolerance {args.tolerance:g} --seeds {" ".join(map(str, args.seeds))} '
        f'--epochs {args.epochs}'
        + (f' --subset {args.subset}' if args.subset else '')
        + f' --out {args.out}'
    )


def table(record: Dict, args) -> str:
    """Markdown: the two networks, their per-seed and mean test top-1."""
    training_set = (
        f'a class-balanced {args.subset}-image subset of the 55k train split'
        if args.subset
        else 'the 55k train split'
    )
    lines = [
        f'Search: `tools/search.py --space mbv2 --proxy az_nas --steps {args.steps} '
        f'--max-flops {args.max_flops / 1e6:g}e6 --seed {args.search_seed}` '
        '(AZ-NAS rank aggregation, evolution). Training: mmpretrain stock '
        '`tools/train.py`, '
        f'{args.epochs} epochs on {training_set}, SGD + cosine '
        '(`fmnist_sgd.py`), batch 128; test top-1 (%) of the last checkpoint on '
        'the official 10k test split.',
        '',
        f'Command: `{command(args)}`',
        '',
        '| network | arch | FLOPs | params | test top-1 (mean ± std) | per seed |',
        '|---|---|---|---|---|---|',
    ]
    means = {}
    for net in NETS:
        info = record['nets'].get(net)
        if info is None:
            continue
        runs = [r for r in record['runs'] if r['net'] == net]
        if runs:
            mean, std = summary([r['top1'] for r in runs])
            means[net] = mean
            acc = f'{mean:.2f} ± {std:.2f}'
            per_seed = ', '.join(f'{r["seed"]}: {r["top1"]:.2f}' for r in runs)
        else:
            acc = per_seed = '–'
        lines.append(
            f'| {net} | `{info["arch"]}` | {info["flops"] / 1e6:.2f} M | '
            f'{info["params"] / 1e3:.1f} k | {acc} | {per_seed} |'
        )
    if len(record['nets']) == 2:
        flops = [record['nets'][net]['flops'] for net in NETS]
        lines += [
            '',
            f'FLOPs of the hand-made network: {flops[1] / flops[0] - 1:+.2%} of the '
            'searched one.',
        ]
    if len(means) == 2:
        lines += [
            '',
            f'Searched minus hand-made: {means["searched"] - means["hand-made"]:+.2f}'
            ' points (mean over seeds).',
        ]
    return '\n'.join(lines)


def save(record: Dict, args, raw_path: Optional[str]) -> None:
    """Write the raw record and the table."""
    if not args.out:
        return
    with open(raw_path, 'w') as f:
        json.dump(record, f, indent=1)
    write_block(args.out, 'nas-fmnist-search', table(record, args))


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    from mmcompress.nas.mbv2_space import MobileNetSpace

    work = osp.join(ROOT, args.work_dir)
    os.makedirs(work, exist_ok=True)
    raw_path = osp.splitext(args.out)[0] + '.json' if args.out else None
    settings = dict(
        max_flops=args.max_flops,
        steps=args.steps,
        search_seed=args.search_seed,
        tolerance=args.tolerance,
        epochs=args.epochs,
        subset=args.subset,
    )
    record = dict(settings=settings, nets={}, runs=[])
    if raw_path and osp.exists(raw_path):
        with open(raw_path) as f:
            held = json.load(f)
        if held['settings'] != settings:
            raise SystemExit(
                f'{raw_path} holds runs of {held["settings"]}, not {settings}: '
                'use another --out or the same settings'
            )
        record = held
    space = MobileNetSpace()
    result = run_search(args, work)
    searched = space.from_str(result['arch'])
    base, _ = handmade_baseline(space, searched, args.tolerance)
    configs = dict(
        searched=result['config'],
        **{
            'hand-made': net_config(
                result['config'], space, base, osp.join(work, 'handmade_mbv2.py')
            )
        },
    )
    for net, arch in (('searched', searched), ('hand-made', base)):
        record['nets'][net] = dict(
            arch=space.to_str(arch),
            flops=space.flops(arch),
            params=num_params(space, arch),
        )
    record['search'] = dict(fitness=result['fitness'], scores=result['scores'])
    save(record, args, raw_path)
    done = {(r['net'], r['seed']) for r in record['runs']}
    for seed in args.seeds:
        for net in args.nets:
            if (net, seed) in done:
                continue
            work_dir = osp.join(work, f'{net}_s{seed}')
            start = time.time()
            last = train(
                configs[net], work_dir, train_options(seed, args.epochs, args.subset)
            )
            run = dict(net=net, seed=seed, train_s=round(time.time() - start, 1))
            run['top1'] = top1_on_test_split(configs[net], last)
            record['runs'].append(run)
            print(json.dumps(run), flush=True)
            save(record, args, raw_path)
    print(table(record, args))
    return record


if __name__ == '__main__':
    main()
