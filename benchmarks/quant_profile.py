"""Where the W4A4 QAT training-step overhead goes: operator profile vs FP32.

The same models as ``quant_overhead.py`` (mmpretrain ResNet-18, FP32 and
mmcompress LSQ W4A4 with the first conv and fc float), the same training step
(forward + cross-entropy + backward + SGD). Each model runs ``--steps`` steps
under ``torch.profiler`` (after warm-up, one process, models alternating); the
self CPU time of every operator is summed per step. The table lists the
operators by the time the QAT step adds over the FP32 step (QAT minus FP32),
so the rows that explain the overhead come first. ``--fused`` profiles the
QAT model with the fused kernels (``LSQQuantizer(fused=True)``);
``--method ewgs|daq|n2uq`` profiles those W4A4 quantizers instead of LSQ.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/quant_profile.py --batch 8 --size 160 \
        --steps 5 --out docs/quant/overhead_profile.md
"""

import argparse
import copy
import platform
from collections import defaultdict

import torch
from machine_load import LoadRecord, add_load_argument
from mmengine.registry import MODELS, DefaultScope
from quant_overhead import FLOAT_MODEL, qat_w4a4, report, step_time
from torch.profiler import ProfilerActivity, profile

import mmcompress  # noqa: F401


def profile_steps(model, optimizer, images, labels, steps: int) -> dict:
    """Self CPU time (ms per step) of every operator over ``steps`` steps.

    Args:
        model (nn.Module): The model, in train mode.
        optimizer (Optimizer): Its optimizer.
        images (Tensor): The batch.
        labels (Tensor): Its labels.
        steps (int): Profiled steps.

    Returns:
        dict: Operator name -> self CPU milliseconds per step, and
        ``'(step wall)'`` -> the mean wall time of a step.
    """
    wall = 0.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            wall += step_time(model, optimizer, images, labels)
    times = defaultdict(float)
    for event in prof.key_averages():
        times[event.key] += event.self_cpu_time_total / 1e3 / steps
    times['(step wall)'] = 1e3 * wall / steps
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=160)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rows', type=int, default=15)
    parser.add_argument('--fused', action='store_true', help='fused kernels')
    parser.add_argument(
        '--method', default='lsq', choices=['lsq', 'ewgs', 'daq', 'n2uq']
    )
    parser.add_argument('--out', default=None, help='markdown file to write')
    add_load_argument(parser)
    args = parser.parse_args()
    load = LoadRecord(args.allow_loaded)
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    DefaultScope.get_instance('quant_profile', scope_name='mmpretrain')
    fp32 = MODELS.build(copy.deepcopy(FLOAT_MODEL)).train()
    qat = qat_w4a4(fp32, args.method, fused=args.fused)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 1000, (args.batch,))
    models = dict(fp32=fp32, qat=qat)
    optims = {
        k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
        for k, m in models.items()
    }
    for _ in range(args.warmup):
        for key, model in models.items():
            step_time(model, optims[key], images, labels)
    prof = {
        k: profile_steps(m, optims[k], images, labels, args.steps)
        for k, m in models.items()
    }
    load.stop()
    wall = {k: prof[k].pop('(step wall)') for k in models}
    ops = set(prof['fp32']) | set(prof['qat'])
    added = sorted(
        ((prof['qat'].get(o, 0.0) - prof['fp32'].get(o, 0.0), o) for o in ops),
        reverse=True,
    )
    total = {k: sum(prof[k].values()) for k in models}
    extra = total['qat'] - total['fp32']
    lines = [
        '# Profile of the W4A4 QAT training step (mmpretrain ResNet-18)',
        '',
        f'Batch {args.batch} x 3 x {args.size} x {args.size}, '
        f'{args.method.upper()} W4A4 (first '
        f'conv and fc float{", fused kernel" if args.fused else ""}), '
        f'{args.steps} profiled steps per model after '
        f'{args.warmup} warm-up; torch {torch.__version__}, '
        f'{torch.get_num_threads()} thread(s), '
        f'{platform.processor() or platform.machine()}.',
        '',
        f'Step wall time: FP32 {wall["fp32"]:.0f} ms, QAT {wall["qat"]:.0f} ms '
        f'({wall["qat"] / wall["fp32"]:.2f}x; the profiler adds its own cost to '
        f'both). Summed operator self time: FP32 {total["fp32"]:.0f} ms, QAT '
        f'{total["qat"]:.0f} ms per step, {extra:.0f} ms added.',
        '',
        '| operator | FP32 ms/step | QAT ms/step | added ms | share of added |',
        '|---|---|---|---|---|',
    ]

    def row(delta: float, op: str) -> str:
        return (
            f'| `{op}` | {prof["fp32"].get(op, 0.0):.1f} | '
            f'{prof["qat"].get(op, 0.0):.1f} | {delta:+.1f} | '
            f'{100 * delta / extra:.0f} % |'
        )

    lines += [row(delta, op) for delta, op in added[: args.rows]]
    # operators faster in the QAT step (e.g. convolutions on quantized inputs)
    lines += [row(d, o) for d, o in added[args.rows :] if d <= -1.0]
    rest = sum(d for d, _ in added[args.rows :] if d > -1.0)
    lines.append(
        f'| (all other operators) | | | {rest:+.1f} | {100 * rest / extra:.0f} % |'
    )
    flags = (' --fused' if args.fused else '') + (
        f' --method {args.method}' if args.method != 'lsq' else ''
    )
    report(lines, 'quant_profile.py', args, load, flags)


if __name__ == '__main__':
    main()
