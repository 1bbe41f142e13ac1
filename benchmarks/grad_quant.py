"""Gradient quantization (LBT) on Fashion-MNIST: accuracy, gradient error, cost.

Three measurements, written to one markdown file (and a PNG next to it):

1. accuracy (test split, 10k images) of the W/A/G configs over seeds:
   ``lbt_minmax_w4a4g4`` (gamma = 1), ``lbt_w4a4g4`` (LBT), ``lsq_w4a4``
   (4/4/32: no gradient quantization), ``lbt_w6a6g6``, ``lbt_w8a8g8`` and
   ``fp32_finetune`` (float reference), each fine-tuned from the float student
   (``--fp-checkpoint``) through mmengine's Runner with
   ``benchmarks/quant_accuracy.py``'s ``run`` (overrides: epochs, subset,
   seed, work dir). Finished runs are kept in ``results.jsonl`` of the work dir
   and skipped when the script is run again;
2. the gradient quantization error per layer over training: mean squared
   error of ``g_q - g`` over all elements and over the 0.1% largest ``|g|``,
   for LBT and gamma = 1 at 4 bits (``--error-iters`` iterations each), as a
   plot;
3. the emulation cost: median training-step time (forward, backward, SGD
   step; CPU, one process, the models timed round-robin after warm-up, the
   load average recorded) of the 4/4/4 LBT model over the 4/4/32 LSQ model.

``--parts`` picks which of the three run (all by default), e.g.
``--parts timing`` alone on a quiet machine.

Usage (the full benchmark; CPU hours):
    OMP_NUM_THREADS=1 python benchmarks/grad_quant.py --seeds 0 1 2 --epochs 3 \
        --fp-checkpoint work_dirs/fp32_resnet18-w8_fmnist/epoch_8.pth \
        --out docs/quant/grad_quant_results.md
Smoke setting (minutes; numbers meaningless): --seeds 0 --epochs 1 --subset 256
    --fp-checkpoint none --error-iters 5 --timing-steps 3
"""

import argparse
import json
import os
import os.path as osp
import statistics
import time

import matplotlib
import torch
import torch.nn.functional as F
from machine_load import LoadRecord, add_load_argument
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from quant_accuracy import CONFIG_DIR, run

import mmcompress  # noqa: F401
from mmcompress.quant import LBTGradQuantizer
from mmcompress.testing import shorten_schedule, shrink_data

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

ACCURACY_CONFIGS = {
    'FP32 fine-tune': 'fp32_finetune_fmnist',
    '4/4/32 (LSQ, float gradients)': 'lsq_w4a4_fmnist',
    '4/4/4 gamma=1 (min-max)': 'lbt_minmax_w4a4g4_fmnist',
    '4/4/4 LBT': 'lbt_w4a4g4_fmnist',
    '6/6/6 LBT': 'lbt_w6a6g6_fmnist',
    '8/8/8 LBT': 'lbt_w8a8g8_fmnist',
}
ERROR_CONFIGS = {'LBT': 'lbt_w4a4g4_fmnist', 'gamma=1': 'lbt_minmax_w4a4g4_fmnist'}
TIMING_CONFIGS = {
    'FP32': 'fp32_resnet18-w8_fmnist',
    '4/4/32': 'lsq_w4a4_fmnist',
    '4/4/4': 'lbt_w4a4g4_fmnist',
}
PARTS = ('accuracy', 'error', 'timing')


def accuracy(args):
    """Train/test every config for every seed; returns {label: [top1...]}."""
    path = osp.join(args.work_dir, 'results.jsonl')
    done = {}
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                done[(r['label'], r['seed'])] = r['top1']
    load_from = None if args.fp_checkpoint == 'none' else args.fp_checkpoint
    for label, name in ACCURACY_CONFIGS.items():
        for seed in args.seeds:
            if (label, seed) in done:
                continue
            work_dir = osp.join(args.work_dir, f'{name}_seed{seed}')
            _, metrics, seconds = run(
                osp.join(CONFIG_DIR, name + '.py'),
                work_dir,
                seed,
                args.epochs,
                args.subset,
                load_from=load_from,
            )
            done[(label, seed)] = metrics['accuracy/top1']
            with open(path, 'a') as f:
                f.write(
                    json.dumps(
                        dict(
                            label=label,
                            seed=seed,
                            top1=done[(label, seed)],
                            seconds=seconds,
                        )
                    )
                    + '\n'
                )
    return {label: [done[(label, s)] for s in args.seeds] for label in ACCURACY_CONFIGS}


class _ErrorRecorder(Hook):
    """Collects each gradient quantizer's error after every iteration."""

    def __init__(self):
        self.records = {}

    def before_train(self, runner):
        for q in runner.model.modules():
            if isinstance(q, LBTGradQuantizer):
                q.record_error = True

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for name, q in runner.model.named_modules():
            if isinstance(q, LBTGradQuantizer) and q.last_error is not None:
                row = dict(q.last_error, gamma=float(q.gamma))
                self.records.setdefault(name, []).append(row)


def gradient_error(args):
    """{method: {layer: [per-iteration dict]}} over ``args.error_iters``."""
    out = {}
    for label, name in ERROR_CONFIGS.items():
        cfg = Config.fromfile(osp.join(CONFIG_DIR, name + '.py'))
        cfg.work_dir = osp.join(args.work_dir, f'error_{name}')
        cfg.randomness = dict(seed=0)
        cfg.load_from = None if args.fp_checkpoint == 'none' else args.fp_checkpoint
        shorten_schedule(cfg, iters=args.error_iters, log_interval=50)
        cfg.param_scheduler = []
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        shrink_data(cfg, subset_size=dict(train=max(args.subset, 128)))
        runner = Runner.from_cfg(cfg)
        recorder = _ErrorRecorder()
        runner.register_hook(recorder, priority='LOWEST')
        runner.train()
        out[label] = recorder.records
    return out


def plot_error(errors, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in zip(
        axes, ('mse_large', 'mse_all'), ('0.1% largest |g|', 'all elements')
    ):
        for (label, layers), style in zip(errors.items(), ('-', '--')):
            for i, (_, rows) in enumerate(sorted(layers.items())):
                ax.plot(
                    [r[key] for r in rows],
                    style,
                    color=f'C{i % 10}',
                    label=f'{label}' if i == 0 else None,
                    linewidth=0.8,
                )
        ax.set_yscale('log')
        ax.set_xlabel('iteration')
        ax.set_title(f'gradient quantization MSE, {title}')
    axes[0].set_ylabel('MSE (colour: layer)')
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def step_times(args):
    """Median step seconds of the FP32, 4/4/32 LSQ and 4/4/4 LBT models, timed
    round-robin in one process (random weights, denormals flushed)."""
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    torch.set_flush_denormal(True)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, 28, 28, generator=gen)
    labels = torch.randint(0, 10, (args.batch,), generator=gen)
    models = {}
    for label, name in TIMING_CONFIGS.items():
        cfg = Config.fromfile(osp.join(CONFIG_DIR, name + '.py'))
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).train()
        models[label] = (model, torch.optim.SGD(model.parameters(), lr=1e-3))
    samples = {label: [] for label in models}
    for step in range(args.timing_steps + 2):  # 2 warm-up (init) steps
        for label, (model, optimizer) in models.items():
            start = time.perf_counter()
            loss = F.cross_entropy(model(images, mode='tensor'), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 2:
                samples[label].append(time.perf_counter() - start)
    return {label: statistics.median(v) for label, v in samples.items()}


def write(args, acc, errors, times, load, plot_path):
    """Print the markdown report of the parts that ran, and write it to
    ``args.out`` when given."""
    lines = ['# Gradient quantization (LBT) on Fashion-MNIST', '']
    lines += [f'Command: `{args.command}`', '']
    if acc:
        mean = {k: statistics.mean(v) for k, v in acc.items()}
        lines += [
            f'Seeds {args.seeds}, {args.epochs} epoch(s) on a {args.subset}-image '
            f'training subset, start: {args.fp_checkpoint}; test split (10k).',
            '',
            '| W/A/G | ' + ' | '.join(f'seed {s}' for s in args.seeds) + ' | mean |',
            '|---|' + '---|' * (len(args.seeds) + 1),
        ]
        lines += [
            f'| {label} | '
            + ' | '.join(f'{v:.2f}' for v in values)
            + f' | {mean[label]:.2f} |'
            for label, values in acc.items()
        ]
        lines.append('')
    if errors:
        lines += [
            f'Gradient quantization error per layer over {args.error_iters} '
            f'iterations: ![error]({osp.basename(plot_path)})',
            '',
        ]
        for label, layers in errors.items():
            last = [rows[-1] for rows in layers.values()]
            lines.append(
                f'- {label}: last iteration, mean over {len(last)} layers: MSE '
                f'large {statistics.mean(r["mse_large"] for r in last):.3e}, MSE '
                f'all {statistics.mean(r["mse_all"] for r in last):.3e}, gamma '
                f'{statistics.mean(r["gamma"] for r in last):.3f}'
            )
        lines.append('')
    if times:
        lines += [
            f'Step time (CPU, {torch.get_num_threads()} thread(s), batch '
            f'{args.batch}, random weights, median of {args.timing_steps} '
            'round-robin steps): '
            + ', '.join(f'{k} {v * 1e3:.1f} ms' for k, v in times.items())
            + f'; 4/4/4 / 4/4/32 {times["4/4/4"] / times["4/4/32"]:.2f}x, '
            f'4/4/32 / FP32 {times["4/4/32"] / times["FP32"]:.2f}x.',
            '',
            load.markdown(),
            '',
        ]
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--subset', type=int, default=20000)
    parser.add_argument(
        '--fp-checkpoint',
        default='work_dirs/fp32_resnet18-w8_fmnist/epoch_8.pth',
        help="float student checkpoint, or 'none'",
    )
    parser.add_argument('--error-iters', type=int, default=200)
    parser.add_argument('--timing-steps', type=int, default=20)
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--work-dir', default='work_dirs/bench_grad_quant')
    parser.add_argument('--out', default=None, help='markdown file to write')
    parser.add_argument(
        '--parts',
        nargs='+',
        choices=PARTS,
        default=list(PARTS),
        help='which measurements to run (default: all)',
    )
    add_load_argument(parser)
    args = parser.parse_args()
    args.command = 'python benchmarks/grad_quant.py ' + ' '.join(
        a for a in os.sys.argv[1:]
    )
    needs_checkpoint = {'accuracy', 'error'} & set(args.parts)
    if (
        needs_checkpoint
        and args.fp_checkpoint != 'none'
        and not osp.isfile(args.fp_checkpoint)
    ):
        raise FileNotFoundError(
            f'--fp-checkpoint {args.fp_checkpoint} does not exist: train '
            'configs/quant/mmpretrain/fp32_resnet18-w8_fmnist.py first, or pass '
            '--fp-checkpoint none (quantized training from scratch)'
        )
    os.makedirs(args.work_dir, exist_ok=True)
    acc = accuracy(args) if 'accuracy' in args.parts else {}
    errors = gradient_error(args) if 'error' in args.parts else {}
    plot_path = (
        osp.splitext(args.out)[0] if args.out else osp.join(args.work_dir, 'grad_quant')
    ) + '_error.png'
    if errors:
        plot_error(errors, plot_path)
    times, load = {}, None
    if 'timing' in args.parts:
        load = LoadRecord(args.allow_loaded)
        times = step_times(args)
        load.stop()
    write(args, acc, errors, times, load, plot_path)


if __name__ == '__main__':
    main()
