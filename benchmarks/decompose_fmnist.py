"""Fashion-MNIST: filter-group decomposition vs channel SVD vs Tucker-2 at one
FLOPs target, KD fine-tune, onnxruntime speed-up next to the FLOPs ratio.

Steps (one seed per call of ``--seed``):

1. the trained model: ``work_dirs/resnet18-w16_fmnist/epoch_4.pth`` from
   ``configs/decompose/mmpretrain/resnet18-w16_fmnist.py`` (train it first
   with ``tools/train.py``); its test top-1;
2. per method, ``tools/decompose.py CONFIG CHECKPOINT --flops-ratio R``
   (plan + weights), the test top-1 right after decomposition, and the plan
   written to ``configs/decompose/mmpretrain/_base_/plan_<method>.py``
   (``--write-plans``: the plans the committed KD configs use);
3. the KD fine-tune ``configs/decompose/mmpretrain/<method>_kd_fmnist.py``
   (DistillModel: decomposed student, undecomposed teacher; ``load_from`` the
   float checkpoint initialises the student's decomposition) for
   ``--epochs`` on a ``--subset`` of the training split, then the test top-1;
4. onnxruntime latency (1 thread, batch 1 and 64, interleaved rounds) of the
   undecomposed and decomposed models.

``--start converged`` starts instead from the converged Fashion-MNIST teacher
(``work_dirs/teacher_r18-w16_fmnist55k/epoch_15.pth``, 93.5 %, trained by
``benchmarks/fmnist_converged.py --models teacher``; same architecture): the
plans come from its weights (``tools/decompose.py`` on its config), the KD
student is the decomposed config ``tools/decompose.py`` writes, the teacher and
``load_from`` are the converged checkpoint; validation every epoch (the curve
is recorded). The block summarises every seed run so far (mean +- std).

Usage::

    python benchmarks/decompose_fmnist.py --write-plans --flops-ratio 0.2 \
        --subset 2000 --epochs 1 --out docs/decompose.md
    python benchmarks/decompose_fmnist.py --start converged --subset 0 \
        --epochs 4 --seed 0 --skip-latency   # then --seed 1, --seed 2
"""

import argparse
import glob
import io
import json
import os
import os.path as osp
import pprint
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint

from mmcompress.testing import shrink_data

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from fmnist_converged import read_curves  # noqa: E402
from machine_load import loadavg  # noqa: E402

BASE_CFG = 'configs/decompose/mmpretrain/resnet18-w16_fmnist.py'
BASE_CKPT = 'work_dirs/resnet18-w16_fmnist/epoch_4.pth'
# The trained model each --start decomposes: its config and checkpoint, the
# work dir of the runs, the doc block and the stem of the per-seed json.
STARTS = dict(
    short=dict(
        config=BASE_CFG,
        checkpoint=BASE_CKPT,
        work_dir='work_dirs/decompose_fmnist',
        block='decompose_fmnist',
        stem='fmnist',
    ),
    converged=dict(
        config='configs/baselines/mmpretrain/teacher_r18-w16_fmnist55k.py',
        checkpoint='work_dirs/teacher_r18-w16_fmnist55k/epoch_15.pth',
        work_dir='work_dirs/decompose_fmnist55k',
        block='decompose_fmnist55k',
        stem='fmnist55k',
    ),
)
METHODS = ('group', 'svd', 'tucker2')
NAMES = dict(
    group='filter-group (group conv + 1x1)', svd='channel SVD', tucker2='Tucker-2'
)


def test_top1(cfg_path: str, checkpoint: str, work_dir: str, options=None) -> float:
    cfg = Config.fromfile(osp.join(ROOT, cfg_path))
    cfg.merge_from_dict(options or {})
    shrink_data(cfg)
    cfg.work_dir, cfg.load_from = work_dir, checkpoint
    return float(Runner.from_cfg(cfg).test()['accuracy/top1'])


def decompose(method: str, args) -> dict:
    start = STARTS[args.start]
    out_dir = osp.join(ROOT, start['work_dir'], f'{method}_s{args.seed}')
    proc = subprocess.run(
        [
            sys.executable,
            osp.join(ROOT, 'tools/decompose.py'),
            start['config'],
            start['checkpoint'],
            '--flops-ratio',
            str(args.flops_ratio),
            '--method',
            method,
            '--shape',
            '1',
            '1',
            '28',
            '28',
            '--out-dir',
            out_dir,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    plan = json.load(open(osp.join(out_dir, 'plan.json')))
    if args.write_plans:
        path = osp.join(
            ROOT, 'configs/decompose/mmpretrain/_base_', f'plan_{method}.py'
        )
        with open(path, 'w') as handle:
            handle.write(
                f'# {NAMES[method]} plan of tools/decompose.py at --flops-ratio '
                f'{args.flops_ratio}\n# for {BASE_CKPT}\n# (benchmarks/'
                f'decompose_fmnist.py --write-plans; FLOPs {result["flops_before"]}'
                f' -> {result["flops_after"]}).\nplan = {pprint.pformat(plan)}\n'
            )
    name = osp.basename(out_dir)
    config = osp.join(
        out_dir,
        [f for f in sorted(os.listdir(out_dir)) if f.endswith('.py')][0],
    )
    result['top1_init'] = test_top1(
        osp.relpath(config, ROOT),
        osp.join(out_dir, 'decomposed.pth'),
        osp.join(out_dir, 'test_init'),
    )
    result['plan'] = plan
    result['name'] = name
    result['config'] = osp.relpath(config, ROOT)
    return result


def kd_config(method: str, args, decomposed_config: str) -> Config:
    """The KD fine-tune config of ``method``: the committed
    ``{method}_kd_fmnist.py``, with ``--start converged`` the student replaced
    by ``decomposed_config`` (tools/decompose.py's config of the converged
    model's plan) and the converged checkpoint as teacher and ``load_from``;
    ``--epochs`` of cosine decay, validation every epoch, ``--subset`` images
    (0: the whole 55k train split).

    Args:
        method (str): One of ``METHODS``.
        args (argparse.Namespace): The benchmark's arguments.
        decomposed_config (str): Path (relative to the repository) of the
            decomposed model's config written by tools/decompose.py.

    Returns:
        Config: The config to build the Runner from.
    """
    cfg = Config.fromfile(
        osp.join(ROOT, f'configs/decompose/mmpretrain/{method}_kd_fmnist.py')
    )
    shrink_data(cfg, subset_size=dict(train=args.subset or None))
    if args.start == 'converged':
        checkpoint = STARTS['converged']['checkpoint']
        cfg.model.student = dict(config=osp.join(ROOT, decomposed_config))
        cfg.model.teacher.checkpoint = checkpoint
        cfg.load_from = checkpoint
    cfg.work_dir = osp.join(
        ROOT, STARTS[args.start]['work_dir'], f'{method}_kd_s{args.seed}'
    )
    cfg.randomness = dict(seed=args.seed, deterministic=False)
    cfg.train_cfg.max_epochs = args.epochs
    cfg.train_cfg.val_interval = 1
    cfg.param_scheduler = [
        dict(
            type='CosineAnnealingLR',
            by_epoch=True,
            begin=0,
            end=args.epochs,
            eta_min=1e-4,
            convert_to_iter_based=True,
        )
    ]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=args.epochs)
    return cfg


def kd_finetune(method: str, args, decomposed_config: str) -> dict:
    """Run the KD fine-tune of :func:`kd_config`.

    Returns:
        dict: ``top1_kd`` (10k test split), ``val_top1`` (the per-epoch
        validation curve on the 5k hold-out) and ``kd_seconds``.
    """
    cfg = kd_config(method, args, decomposed_config)
    tick = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    seconds = time.perf_counter() - tick
    return dict(
        top1_kd=float(runner.test()['accuracy/top1']),
        val_top1=read_curves(cfg.work_dir)['val_top1'],
        kd_seconds=round(seconds, 1),
    )


def latency(models: dict, batches, rounds: int, iters: int) -> list:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {}
    for name, model in models.items():
        buffer = io.BytesIO()
        torch.onnx.export(
            model,
            (torch.randn(1, 1, 28, 28),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=['input'],
            output_names=['output'],
            dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}},
        )
        sessions[name] = ort.InferenceSession(
            buffer.getvalue(), options, providers=['CPUExecutionProvider']
        )
    rows = []
    for batch in batches:
        x = np.random.randn(batch, 1, 28, 28).astype(np.float32)
        times = {name: [] for name in sessions}
        for _ in range(rounds):
            for name, session in sessions.items():
                session.run(None, {'input': x})
                start = time.perf_counter()
                for _ in range(iters):
                    session.run(None, {'input': x})
                times[name].append((time.perf_counter() - start) / iters)
        rows.append(
            {name: statistics.median(t) * 1e3 for name, t in times.items()}
            | dict(batch=batch)
        )
    return rows


def build_plain(plan=None, start: str = 'short'):
    from mmcompress.decompose import apply_plan
    from mmcompress.quant.export import TensorModeWrapper

    cfg = Config.fromfile(osp.join(ROOT, STARTS[start]['config']))
    DefaultScope.get_instance(f'dec_bench_{time.time()}', scope_name='mmpretrain')
    model = MODELS.build(cfg.model)
    if plan:
        apply_plan(model, plan, init_from_weights=False)
    load_checkpoint(
        model, osp.join(ROOT, STARTS[start]['checkpoint']), map_location='cpu'
    )
    return TensorModeWrapper(model.eval()).eval()


def table(results: dict, args) -> str:
    base = results['base_top1']
    lines = [
        f'FLOPs target {args.flops_ratio} of the model '
        f'(-{(1 - args.flops_ratio) * 100:.0f}%);'
        f' trained model top-1 {base:.2f}; KD fine-tune {args.epochs} epoch(s) on a '
        f'{args.subset}-image class-balanced subset, seed {args.seed}; test = the 10k '
        'Fashion-MNIST test split.',
        '',
        '| method | FLOPs kept | layers decomposed | top-1 after decomposition | '
        'top-1 after KD fine-tune | drop vs trained model |',
        '|---|---|---|---|---|---|',
    ]
    for method in METHODS:
        r = results.get(method)
        if not r:
            continue
        kd = r.get('top1_kd')
        lines.append(
            f'| {NAMES[method]} | {r["ratio"]:.3f} | {r["layers"]} | '
            f'{r["top1_init"]:.2f} | {f"{kd:.2f}" if kd is not None else "-"} | '
            f'{f"{base - kd:.2f}" if kd is not None else "-"} |'
        )
    if results.get('latency'):
        lines += [
            '',
            f'onnxruntime latency (ms, 1 thread, median of interleaved rounds;'
            f' loadavg {results["latency_load"]}, shared machine):',
            '',
            '| batch | trained model | '
            + ' | '.join(NAMES[m] for m in METHODS if m in results)
            + ' |',
            '|---|---|' + '---|' * sum(m in results for m in METHODS),
        ]
        for row in results['latency']:
            cells = [f'{row["base"]:.3f}'] + [
                f'{row[m]:.3f} ({row["base"] / row[m]:.2f}x)'
                for m in METHODS
                if m in row
            ]
            lines.append(f'| {row["batch"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def latency_only(args) -> None:
    from mmcompress.decompose import plan_decomposition, total_flops

    start = STARTS[args.start]
    example = (torch.randn(1, 1, 28, 28),)
    base = build_plain(start=args.start)
    models, ratios = dict(base=base), {}
    for method in args.methods:
        plan = plan_decomposition(base.model, example, args.flops_ratio, method)
        models[method] = build_plain(plan, args.start)
        ratios[method] = total_flops(models[method], example) / total_flops(
            base, example
        )
    before = loadavg()
    rows = latency(models, (1, 64), args.rounds, 10)
    load = f'{before} -> {loadavg()}'
    lines = [
        f'Trained model `{start["checkpoint"]}`. '
        f'onnxruntime latency (ms), 1 thread, median of {args.rounds} interleaved '
        f'rounds x 10 runs; loadavg {load} (shared machine). In brackets: '
        'speed-up over the trained model; FLOPs kept: '
        + ', '.join(f'{NAMES[m]} {r:.3f}' for m, r in ratios.items())
        + '.',
        '',
        '| batch | trained model | '
        + ' | '.join(NAMES[m] for m in args.methods)
        + ' |',
        '|---|---|' + '---|' * len(args.methods),
    ]
    for row in rows:
        cells = [f'{row["base"]:.3f}'] + [
            f'{row[m]:.3f} ({row["base"] / row[m]:.2f}x)' for m in args.methods
        ]
        lines.append(f'| {row["batch"]} | ' + ' | '.join(cells) + ' |')
    raw = osp.splitext(osp.join(ROOT, args.out))[0] + f'_{start["stem"]}_latency.json'
    with open(raw, 'w') as handle:
        json.dump(dict(rows=rows, ratios=ratios, loadavg=load), handle, indent=1)
    write_block(osp.join(ROOT, args.out), start['block'] + '_latency', '\n'.join(lines))
    print(json.dumps(dict(rows=rows, ratios=ratios)))


def raw_path(args, seed) -> str:
    """The per-seed json of ``args.start`` next to ``args.out`` (``seed``
    may be ``'*'`` for a glob of all of them)."""
    stem = STARTS[args.start]['stem']
    return osp.splitext(osp.join(ROOT, args.out))[0] + f'_{stem}_s{seed}.json'


def seed_table(runs: dict, args) -> str:
    """The ``--start converged`` block: every seed run so far, per method
    mean +- std of the test top-1 after the KD fine-tune.

    Args:
        runs (dict): ``{seed: results}`` (the per-seed json files).
        args (argparse.Namespace): The benchmark's arguments.

    Returns:
        str: The markdown block.
    """
    start = STARTS[args.start]
    base = statistics.mean(r['base_top1'] for r in runs.values())
    seeds = sorted(runs)
    lines = [
        f'Trained model: `{start["checkpoint"]}` (the converged teacher of '
        f'benchmarks/fmnist_converged.py), test top-1 {base:.2f}. FLOPs target '
        f'{args.flops_ratio} (-{(1 - args.flops_ratio) * 100:.0f}%). KD fine-tune '
        f'(CE + tau^2 KL, tau 4, teacher = the trained model): {args.epochs} '
        'epoch(s) on '
        + (f'a {args.subset}-image subset' if args.subset else 'the 55k train split')
        + ', batch 128, SGD lr 0.01 cosine to 1e-4; seeds '
        + ', '.join(map(str, seeds))
        + '; test = the 10k Fashion-MNIST test split; val = the 5k hold-out.',
        '',
        '| method | FLOPs kept | layers decomposed | top-1 after decomposition | '
        'top-1 after KD fine-tune (mean +- std) | per seed | drop vs trained model '
        '| val top-1 per epoch (seed '
        f'{seeds[0]}) | fine-tune s per run |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for method in METHODS:
        done = [runs[s][method] for s in seeds if 'top1_kd' in runs[s].get(method, {})]
        if not done:
            continue
        kd = [r['top1_kd'] for r in done]
        std = f'{statistics.stdev(kd):.2f}' if len(kd) > 1 else '-'
        curve = ', '.join(f'{v:.2f}' for _, v in done[0]['val_top1'])
        lines.append(
            f'| {NAMES[method]} | {done[0]["ratio"]:.3f} | {done[0]["layers"]} | '
            f'{done[0]["top1_init"]:.2f} | {statistics.mean(kd):.2f} +- {std} | '
            + ', '.join(f'{v:.2f}' for v in kd)
            + f' | {base - statistics.mean(kd):.2f} | {curve} | '
            + ', '.join(f'{r["kd_seconds"]:.0f}' for r in done)
            + ' |'
        )
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--start', choices=sorted(STARTS), default='short')
    parser.add_argument('--flops-ratio', type=float, default=0.2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--subset',
        type=int,
        default=2000,
        help='class-balanced training subset of the KD fine-tune; 0: the whole split',
    )
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--methods', nargs='+', default=list(METHODS))
    parser.add_argument('--write-plans', action='store_true')
    parser.add_argument('--skip-kd', action='store_true')
    parser.add_argument('--skip-latency', action='store_true')
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--out', default='docs/decompose.md')
    parser.add_argument(
        '--latency-only',
        action='store_true',
        help='only the onnxruntime latency (plans planned anew from the trained '
        'model), in its own .json and doc block',
    )
    args = parser.parse_args()
    if args.write_plans and args.start != 'short':
        parser.error(
            '--write-plans writes the plans of the committed KD configs, which '
            'decompose the short-trained model: use it with --start short'
        )
    start = STARTS[args.start]
    if not osp.isfile(osp.join(ROOT, start['checkpoint'])):
        parser.error(
            f'--start {args.start} needs {start["checkpoint"]}: train it first '
            + (
                '(python benchmarks/fmnist_converged.py --models teacher --seeds 0)'
                if args.start == 'converged'
                else f'(python tools/train.py {BASE_CFG})'
            )
        )
    torch.set_num_threads(1)
    if args.latency_only:
        latency_only(args)
        return
    raw = raw_path(args, args.seed)
    results = json.load(open(raw)) if osp.isfile(raw) else {}
    results['loadavg_start'] = loadavg()
    if 'base_top1' not in results:
        results['base_top1'] = test_top1(
            start['config'],
            start['checkpoint'],
            osp.join(ROOT, start['work_dir'], 'base'),
        )

    def save():
        with open(raw, 'w') as handle:
            json.dump(results, handle, indent=1)
        if args.start == 'short':
            body = table(results, args)
        else:
            runs = {
                int(osp.splitext(path)[0].rsplit('_s', 1)[1]): json.load(open(path))
                for path in glob.glob(raw_path(args, '*'))
            }
            body = seed_table(runs, args)
        write_block(osp.join(ROOT, args.out), start['block'], body)

    for method in args.methods:
        if method not in results:
            results[method] = decompose(method, args)
            save()
        if not args.skip_kd and 'top1_kd' not in results[method]:
            results[method].update(
                kd_finetune(method, args, results[method].get('config'))
            )
            save()
    if not args.skip_latency:
        models = dict(base=build_plain(start=args.start))
        for method in args.methods:
            models[method] = build_plain(results[method]['plan'], args.start)
        before = loadavg()
        results['latency'] = latency(models, (1, 64), args.rounds, 10)
        results['latency_load'] = f'{before} -> {loadavg()}'
        save()
    print(json.dumps({k: v for k, v in results.items() if k not in METHODS}))


if __name__ == '__main__':
    main()
