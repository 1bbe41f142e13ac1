"""Fashion-MNIST accuracy of QAT methods vs FP32, over several seeds.

Train the float student once (configs/quant/mmpretrain/fp32_resnet18-w8_fmnist.py),
then, for every seed, fine-tune it with each quantizer config
``configs/quant/mmpretrain/{method}_w{b}a{b}_fmnist.py`` and, as the reference,
with the same recipe unquantized (fp32_finetune_fmnist.py); evaluate every model
on the official 10k test split. Finished runs are kept in ``results.jsonl`` of
the work dir and skipped when the script is run again. Runs go
through mmengine's Runner in this process with the configs as shipped, except
the overrides printed in the output (epochs, subset size, seed, work dir).

Usage (CPU minutes per run; see the table's header for the settings used):
    OMP_NUM_THREADS=1 python benchmarks/quant_accuracy.py --seeds 0 1 2 \
        --methods ste lsq ewgs daq n2uq --bits 4 2 --out docs/quant/accuracy.md
"""

import argparse
import json
import os
import os.path as osp
import statistics
import time

from mmengine.config import Config
from mmengine.runner import Runner

import mmcompress  # noqa: F401
import mmcompress.quant  # noqa: F401  (registers the quantizers)
from mmcompress.testing import shorten_schedule, shrink_data

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'quant', 'mmpretrain'
)


def run(config, work_dir, seed, epochs, subset, load_from=None, test=True):
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed, deterministic=False)
    shorten_schedule(cfg, epochs=epochs, log_interval=100, max_keep_ckpts=1)
    for scheduler in (
        cfg.param_scheduler
        if isinstance(cfg.param_scheduler, list)
        else [cfg.param_scheduler]
    ):
        if scheduler.get('end', 0) > epochs:
            scheduler.end = epochs
    cfg.load_from = load_from
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    shrink_data(cfg, subset_size=dict(train=subset))
    runner = Runner.from_cfg(cfg)
    start = time.time()
    runner.train()
    seconds = time.time() - start
    metrics = runner.test() if test else {}
    return osp.join(work_dir, f'epoch_{epochs}.pth'), metrics, seconds


def write_table(results, args):
    """Print the results table and write it to ``args.out`` (after every run)."""
    fp_mean = statistics.mean(results.get('FP32_finetune', results['FP32']))
    lines = [
        '# QAT accuracy on Fashion-MNIST (test split, 10k images)',
        '',
        f'Student: CIFAR-style ResNet-18, widths 8/16/32 (first conv and fc float). '
        f'FP32: {args.fp_epochs} epochs (seed {args.fp_seed}); QAT: '
        f'{args.qat_epochs} epoch(s) from that checkpoint per seed; training on a '
        f'class-balanced {args.subset}-image subset; seeds {args.seeds}.',
        '',
        'FP32 is the pre-trained float model; FP32_finetune is that model fine-tuned '
        'with the QAT recipe without quantization (the reference of the last '
        'column).',
        '',
        '| model | top-1 mean | std | runs | vs FP32_finetune (pt) |',
        '|---|---|---|---|---|',
    ]
    for name, values in results.items():
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        runs = ', '.join(f'{v:.2f}' for v in values)
        lines.append(
            f'| {name} | {mean:.2f} | {std:.2f} | {runs} | {mean - fp_mean:+.2f} |'
        )
    lines += [
        '',
        'Reproduce: `OMP_NUM_THREADS=1 .venv/bin/python '
        'benchmarks/quant_accuracy.py '
        f'--seeds {" ".join(map(str, args.seeds))} --methods {" ".join(args.methods)} '
        f'--bits {" ".join(map(str, args.bits))} --fp-seed {args.fp_seed} '
        f'--fp-epochs {args.fp_epochs} --qat-epochs {args.qat_epochs} '
        f'--subset {args.subset}`',
    ]
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--methods', nargs='+', default=['ste', 'lsq', 'ewgs', 'daq', 'n2uq']
    )
    parser.add_argument('--bits', type=int, nargs='+', default=[4, 2])
    parser.add_argument(
        '--fp-seed', type=int, default=0, help='seed of the one float pre-training run'
    )
    parser.add_argument('--fp-epochs', type=int, default=4)
    parser.add_argument('--qat-epochs', type=int, default=1)
    parser.add_argument(
        '--subset', type=int, default=10000, help='class-balanced training subset size'
    )
    parser.add_argument('--work-dir', default='work_dirs/quant_accuracy')
    parser.add_argument('--out', default=None, help='markdown file to write')
    args = parser.parse_args()

    os.makedirs(args.work_dir, exist_ok=True)
    log = osp.join(args.work_dir, 'results.jsonl')
    done = {}
    if osp.exists(log):
        with open(log) as file:
            for line in file:
                record = json.loads(line)
                done[(record['run'], record['seed'])] = record['accuracy/top1']
    results = {}

    def record(name, seed, config, epochs, load_from=None):
        if (name, seed) not in done:
            _, metrics, seconds = run(
                osp.join(CONFIG_DIR, config),
                osp.join(args.work_dir, f'{name}_seed{seed}'),
                seed,
                epochs,
                args.subset,
                load_from=load_from,
            )
            done[(name, seed)] = metrics['accuracy/top1']
            with open(log, 'a') as file:
                file.write(
                    json.dumps(dict(run=name, seed=seed, seconds=seconds, **metrics))
                    + '\n'
                )
        results.setdefault(name, []).append(done[(name, seed)])
        write_table(results, args)

    record('FP32', args.fp_seed, 'fp32_resnet18-w8_fmnist.py', args.fp_epochs)
    fp_ckpt = osp.join(
        args.work_dir, f'FP32_seed{args.fp_seed}', f'epoch_{args.fp_epochs}.pth'
    )
    runs = [('FP32_finetune', 'fp32_finetune_fmnist.py')]
    runs += [
        (f'{m}_w{b}a{b}', f'{m}_w{b}a{b}_fmnist.py')
        for b in args.bits
        for m in args.methods
    ]
    for name, config in runs:
        for seed in args.seeds:
            record(name, seed, config, args.qat_epochs, load_from=fp_ckpt)


if __name__ == '__main__':
    main()
