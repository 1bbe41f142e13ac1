"""Mixed precision vs uniform bits at equal BOPs on Fashion-MNIST, through
``tools/compress.py``: the ``mixed`` recipe (8 / 4 bits per layer by output
sensitivity under a BOPs budget) against the ``qat-int8`` recipe at a uniform
width whose BOPs are the budget, same float checkpoint, schedule and seed.

1. budget: the BOPs of the uniform ``--bits`` model (all quantized layers at
   ``--bits`` weights and inputs, :func:`layer_bops` at 1 x 1 x 28 x 28);
2. ``tools/compress.py CONFIG CKPT --recipe mixed --gbops BUDGET``;
3. ``tools/compress.py CONFIG CKPT --recipe qat-int8 --qat-options
   model.quant.w.bits=B model.quant.a.bits=B``;
4. the table (test top-1 of PyTorch QAT and onnxruntime int8, BOPs, the
   per-layer onnxruntime latency table's sum, whole-graph latency at batch 1
   with the load average) and the per-layer sensitivity / bit plot.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/mixed_fmnist.py CONFIG FP32_CKPT \\
        --work-dir WORK [--bits 5] [--seed 0] [--out docs/deploy.md \\
        [--block mixed_fmnist]] [--plot PNG]
"""

import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

import mmcompress  # noqa: F401
from mmcompress.quant.export import onnxruntime_session
from mmcompress.quant.mixed_precision import layer_bops, quantized_layer_names

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(osp.dirname(HERE), 'tools'))
import compress  # noqa: E402
from doc_blocks import write_block  # noqa: E402
from export_onnx import build_model  # noqa: E402

SHAPE = (1, 1, 28, 28)


def uniform_budget(config, checkpoint, bits):
    """GBOPs of the recipe's quantized layers all at ``bits``."""
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = build_model(cfg)
        load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
        quant = compress.load_recipe('mixed').quant.to_dict()
        layers = quantized_layer_names(model, quant)
        table = layer_bops(model, torch.zeros(SHAPE), layers, [bits])
    return sum(t[bits] for t in table.values())


def graph_ms(paths, runs=200):
    """Median ms at batch 1, 1 thread, interleaved runs."""
    sessions = {k: onnxruntime_session(open(p, 'rb').read()) for k, p in paths.items()}
    feed = {'input': torch.randn(SHAPE).numpy()}
    times = {k: [] for k in sessions}
    for i in range(runs + 5):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            if i >= 5:
                times[key].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def plot(work, path, bits):
    """Per-layer sensitivity (8 / 4 bits, log scale) and allocated bits."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    with open(osp.join(work, 'mixed', 'sensitivity', 'result.json')) as file:
        sens = json.load(file)
    with open(osp.join(work, 'mixed', 'allocate', 'result.json')) as file:
        alloc = json.load(file)['allocation']
    names = list(sens)
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for offset, key in ((-0.2, '8'), (0.2, '4')):
        ax.bar(
            [x + offset for x in xs],
            [sens[n][key] for n in names],
            0.4,
            label=f'sensitivity at {key} bits',
        )
    ax.set_yscale('log')
    ax.set_ylabel('KL(float || one layer quantized)')
    ax.set_xticks(
        list(xs),
        [n.replace('backbone.', '') for n in names],
        rotation=60,
        ha='right',
        fontsize=7,
    )
    twin = ax.twinx()
    twin.plot(list(xs), [int(alloc[n]) for n in names], 'ko-', label='allocated bits')
    twin.axhline(bits, color='grey', ls='--', label=f'uniform {bits} bits')
    twin.set_ylabel('bits (weights and inputs)')
    twin.set_ylim(0, 9)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc='upper right')
    ax.set_title(
        'Fashion-MNIST student: per-layer sensitivity and the allocation '
        'at the BOPs of uniform bits',
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--bits', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0, help='training seed')
    parser.add_argument('--out', help='docs page whose block to write')
    parser.add_argument(
        '--block', default='mixed_fmnist', help='the block --out replaces'
    )
    parser.add_argument('--plot', help='sensitivity / bits plot (.png)')
    args = parser.parse_args()
    budget = uniform_budget(args.config, args.checkpoint, args.bits)
    common = [args.config, args.checkpoint, '--shape', *map(str, SHAPE)]
    common += ['--cfg-options', f'randomness.seed={args.seed}']
    runs = dict(
        mixed=['--recipe', 'mixed', '--gbops', f'{budget:.6f}'],
        uniform=[
            '--recipe',
            'qat-int8',
            '--qat-options',
            f'model.quant.w.bits={args.bits}',
            f'model.quant.a.bits={args.bits}',
        ],
    )
    summary = {}
    for name, extra in runs.items():
        work = osp.join(args.work_dir, name)
        compress.main(common + extra + ['--work-dir', work])
        with open(osp.join(work, 'summary.json')) as file:
            summary[name] = json.load(file)
    latency = summary['mixed']['latency']
    before = os.getloadavg()
    ms = graph_ms({k: s['export']['onnx'] for k, s in summary.items()})
    after = os.getloadavg()
    alloc = summary['mixed']['allocate']['allocation']
    table_ms = dict(
        mixed=sum(latency['ms'][n][b] for n, b in alloc.items()),
        uniform=sum(t['8'] for t in latency['ms'].values()),
    )
    gbops = dict(mixed=summary['mixed']['allocate']['cost']['gbops'], uniform=budget)
    counts = {b: list(alloc.values()).count(b) for b in sorted(set(alloc.values()))}
    lines = [
        '| model | test top-1 PyTorch QAT | test top-1 onnxruntime int8 | GBOPs '
        '| per-layer table sum (ms) | whole graph (ms) |',
        '|---|---|---|---|---|---|',
    ]
    float_top1 = summary['mixed']['float_test']['metrics']['accuracy/top1']
    for name, label in (
        (
            'mixed',
            'mixed (' + ', '.join(f'{v} x {k} bits' for k, v in counts.items()) + ')',
        ),
        ('uniform', f'uniform W{args.bits}A{args.bits}'),
    ):
        s = summary[name]
        lines.append(
            f'| {label} | {s["qat_test"]["metrics"]["accuracy/top1"]:.2f} | '
            f'{s["onnx_test"]["metrics"]["accuracy/top1"]:.2f} | {gbops[name]:.4f} | '
            f'{table_ms[name]:.3f} | {ms[name]:.3f} |'
        )
    lines += [
        '',
        f'Seed {args.seed}. Float model: {float_top1:.2f}. Budget: {budget:.4f} '
        f'GBOPs (uniform {args.bits} bits). Latency: onnxruntime CPU, 1 thread, '
        'batch 1; per-layer table: each layer alone (`layer_latency`, 4-bit '
        f'layers at the 8-bit kernel latency), load average at the table '
        f'{"/".join(f"{v:.2f}" for v in latency["load_average"])}; whole graph: '
        f'median of 200 interleaved runs, load average before '
        f'{"/".join(f"{v:.2f}" for v in before)}, after '
        f'{"/".join(f"{v:.2f}" for v in after)} ({os.cpu_count()} cores).',
    ]
    text = '\n'.join(lines)
    print(text)
    if args.out:
        write_block(args.out, args.block, text)
    if args.plot:
        plot(args.work_dir, args.plot, args.bits)


if __name__ == '__main__':
    main()
