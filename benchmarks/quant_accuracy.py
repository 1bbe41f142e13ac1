"""Fashion-MNIST accuracy of QAT methods vs FP32, over several seeds.

Train the float student once (configs/quant/mmpretrain/fp32_resnet18-w8_fmnist.py),
or, with ``--fp-checkpoint``, start from a given float student checkpoint
(checked first to hold exactly the float weights of every benchmarked config;
the FP32 row is then that checkpoint's test accuracy), then, for every seed,
fine-tune it with each quantizer config
``configs/quant/mmpretrain/{method}_w{b}a{b}_fmnist.py`` and, as the reference,
with the same recipe unquantized (fp32_finetune_fmnist.py); evaluate every model
on the official 10k test split. Finished runs are kept in ``results.jsonl`` of
the work dir and skipped when the script is run again. Runs go
through mmengine's Runner in this process with the configs as shipped, except
the overrides printed in the output (epochs, subset size, seed, work dir).
Results of different starts (pre-trained here, or each ``--fp-checkpoint``
with its epochs and subset) are keyed apart in ``results.jsonl`` and never
mix. ``--report-only`` writes the table from recorded runs without training.

Usage (CPU minutes per run; the two tables of docs/quant/accuracy.md, each
written alone by ``--out``):
    OMP_NUM_THREADS=1 python benchmarks/quant_accuracy.py --seeds 0 1 2 \
        --methods ste lsq ewgs daq n2uq --bits 4 2 --out short.md
From the converged float student (benchmarks/fmnist_converged.py):
    OMP_NUM_THREADS=1 python benchmarks/quant_accuracy.py --seeds 0 1 2 \
        --fp-checkpoint work_dirs/student_r18-w8_fmnist55k/epoch_15.pth \
        --qat-epochs 1 --subset 30000 --out converged.md
"""

import argparse
import copy
import json
import os
import os.path as osp
import statistics
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import mmcompress  # noqa: F401
import mmcompress.quant  # noqa: F401  (registers the quantizers)
from mmcompress.testing import shorten_schedule, shrink_data
from mmcompress.utils.load_check import declared_optional

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'quant', 'mmpretrain'
)
CONVERGED = 'work_dirs/student_r18-w8_fmnist55k/epoch_15.pth'


def check_fp_checkpoint(path, config_names):
    """Raise unless ``path`` holds exactly the float weights of every model of
    ``config_names`` (file names in ``CONFIG_DIR`` without ``.py``): same keys
    and shapes, only state the model declares optional absent (quantizers,
    EWGS/DAQ output scales: :func:`~mmcompress.utils.load_check.declared_optional`).
    mmengine's ``load_from`` loads non-strictly and only logs mismatches, so a
    checkpoint of another architecture would otherwise train from random
    layers silently."""
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    state = torch.load(path, map_location='cpu', weights_only=False)
    state = state.get('state_dict', state)
    for name in sorted(set(config_names)):
        model = MODELS.build(Config.fromfile(osp.join(CONFIG_DIR, name + '.py')).model)
        expected = model.state_dict()
        missing = [
            k for k in expected if k not in state and not declared_optional(model, k)
        ]
        unexpected = [k for k in state if k not in expected]
        shapes = [
            f'{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}'
            for k, v in expected.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or shapes:
            raise ValueError(
                f'--fp-checkpoint {path} does not match {name}.py: missing '
                f'{missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} '
                f'({len(unexpected)}), shape (checkpoint vs model) {shapes[:5]}; '
                'pass the float Fashion-MNIST student (fmnist_resnet18-w8_student '
                f'architecture), e.g. {CONVERGED}'
            )


def build_runner(
    config, work_dir, seed, epochs, subset, load_from=None, cfg_options=None
):
    """The Runner of one fine-tuning run: ``config`` as shipped except the
    seed, ``epochs`` (the schedulers cut to them), a class-balanced ``subset``
    of the train split, no validation, ``load_from``, ``work_dir`` and
    ``cfg_options`` (a dict merged into the config first, e.g. another
    optimizer and schedule)."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(copy.deepcopy(cfg_options))
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
    return Runner.from_cfg(cfg)


def run(
    config, work_dir, seed, epochs, subset, load_from=None, test=True, cfg_options=None
):
    """Train (and test) one run of :func:`build_runner`; returns the last
    checkpoint's path, the test metrics and the training seconds."""
    runner = build_runner(
        config, work_dir, seed, epochs, subset, load_from, cfg_options
    )
    start = time.time()
    runner.train()
    seconds = time.time() - start
    metrics = runner.test() if test else {}
    return osp.join(work_dir, f'epoch_{epochs}.pth'), metrics, seconds


def evaluate_checkpoint(config, work_dir, load_from):
    """Test metrics of ``load_from`` under ``config``'s model and test split,
    without training."""
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.load_from = load_from
    cfg.train_dataloader = cfg.train_cfg = cfg.optim_wrapper = None
    cfg.param_scheduler = cfg.val_dataloader = cfg.val_cfg = None
    cfg.val_evaluator = None
    return Runner.from_cfg(cfg).test()


def _header(args):
    student = (
        'Student: CIFAR-style ResNet-18, widths 8/16/32 (first conv and fc float).'
    )
    if args.fp_checkpoint:
        return [
            f'{student} FP32: the float checkpoint `{args.fp_checkpoint}` (tested, '
            f'not fine-tuned); QAT: {args.qat_epochs} epoch(s) from it per seed on '
            f'a class-balanced {args.subset}-image subset of the 55k train split; '
            f'seeds {args.seeds}.',
            '',
            'FP32_finetune is that checkpoint fine-tuned with the QAT recipe '
            'without quantization (the reference of the last column). train s: '
            'mean training wall seconds per run (one thread; load average at its '
            'end in the next column; FP32 is only tested).',
        ]
    return [
        f'{student} FP32: {args.fp_epochs} epochs (seed {args.fp_seed}); QAT: '
        f'{args.qat_epochs} epoch(s) from that checkpoint per seed; training on a '
        f'class-balanced {args.subset}-image subset; seeds {args.seeds}.',
        '',
        'FP32 is the pre-trained float model; FP32_finetune is that model fine-tuned '
        'with the QAT recipe without quantization (the reference of the last '
        'column).',
    ]


def _command(args):
    start = (
        f'--fp-checkpoint {args.fp_checkpoint} '
        if args.fp_checkpoint
        else f'--fp-seed {args.fp_seed} --fp-epochs {args.fp_epochs} '
    )
    return (
        'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quant_accuracy.py '
        f'--seeds {" ".join(map(str, args.seeds))} --methods {" ".join(args.methods)} '
        f'--bits {" ".join(map(str, args.bits))} {start}'
        f'--qat-epochs {args.qat_epochs} --subset {args.subset}'
    )


def write_table(results, args):
    """Print the results table ({name: [record...]}, an empty list for runs
    not measured) and write it to ``args.out`` (after every run)."""
    top1 = {k: [r['accuracy/top1'] for r in v] for k, v in results.items()}
    ref = top1.get('FP32_finetune') or top1['FP32']
    fp_mean = statistics.mean(ref) if ref else float('nan')
    timed = bool(args.fp_checkpoint)
    lines = ['# QAT accuracy on Fashion-MNIST (test split, 10k images)', '']
    lines += _header(args) + ['']
    columns = '| model | top-1 mean | std | runs | vs FP32_finetune (pt) |'
    lines += [
        columns + (' train s | load |' if timed else ''),
        '|---|---|---|---|---|' + ('---|---|' if timed else ''),
    ]
    for name, values in top1.items():
        if not values:
            lines.append(f'| {name} | not measured yet | | | |' + (' | |' * timed))
            continue
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        runs = ', '.join(f'{v:.2f}' for v in values)
        row = f'| {name} | {mean:.2f} | {std:.2f} | {runs} | {mean - fp_mean:+.2f} |'
        if timed:
            seconds = statistics.mean(r.get('seconds', 0.0) for r in results[name])
            loads = [r['load'] for r in results[name] if 'load' in r]
            load = f'{min(loads):.1f}-{max(loads):.1f}' if loads else ''
            row += f' {seconds:.0f} | {load} |' if seconds else f' - | {load} |'
        lines.append(row)
    lines += ['', f'Reproduce: `{_command(args)}`']
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--methods', nargs='+', default=['ste', 'lsq', 'ewgs', 'daq', 'n2uq']
    )
    parser.add_argument('--bits', type=int, nargs='+', default=[4, 2])
    parser.add_argument(
        '--fp-checkpoint',
        default=None,
        help='start QAT from this float student checkpoint (e.g. '
        f'{CONVERGED}) instead of pre-training one here',
    )
    parser.add_argument(
        '--fp-seed', type=int, default=0, help='seed of the one float pre-training run'
    )
    parser.add_argument('--fp-epochs', type=int, default=4)
    parser.add_argument('--qat-epochs', type=int, default=1)
    parser.add_argument(
        '--subset', type=int, default=10000, help='class-balanced training subset size'
    )
    parser.add_argument(
        '--work-dir',
        default=None,
        help='default: work_dirs/quant_accuracy, or with --fp-checkpoint '
        'work_dirs/quant_accuracy_converged',
    )
    parser.add_argument('--out', default=None, help='markdown file to write')
    parser.add_argument(
        '--report-only',
        action='store_true',
        help='write the table from results.jsonl; train nothing',
    )
    args = parser.parse_args(argv)
    if args.work_dir is None:
        args.work_dir = 'work_dirs/quant_accuracy' + (
            '_converged' if args.fp_checkpoint else ''
        )
    return args


def _runs(args):
    runs = [('FP32_finetune', 'fp32_finetune_fmnist')]
    runs += [
        (f'{m}_w{b}a{b}', f'{m}_w{b}a{b}_fmnist')
        for b in args.bits
        for m in args.methods
    ]
    return runs


def _load_done(log):
    """{(run, seed, start): record} of ``log``; ``start`` is None for runs
    from the float model pre-trained here."""
    done = {}
    if osp.exists(log):
        with open(log) as file:
            for line in file:
                record = json.loads(line)
                done[(record['run'], record['seed'], record.get('start'))] = record
    return done


def main(argv=None):
    args = parse_args(argv)
    runs = _runs(args)
    if args.fp_checkpoint:
        if not osp.isfile(args.fp_checkpoint):
            raise FileNotFoundError(
                f'--fp-checkpoint {args.fp_checkpoint} does not exist: train the '
                'float student first (python benchmarks/fmnist_converged.py), or '
                'leave --fp-checkpoint out to pre-train a short one here'
            )
        check_fp_checkpoint(args.fp_checkpoint, [config for _, config in runs])
    os.makedirs(args.work_dir, exist_ok=True)
    log = osp.join(args.work_dir, 'results.jsonl')
    done = _load_done(log)
    start = (
        f'{args.fp_checkpoint}|epochs={args.qat_epochs}|subset={args.subset}'
        if args.fp_checkpoint
        else None
    )
    results = {}

    def record(name, seed, train):
        if (name, seed, start) not in done and not args.report_only:
            metrics, seconds = train(osp.join(args.work_dir, f'{name}_seed{seed}'))
            row = dict(run=name, seed=seed, seconds=seconds, **metrics)
            if start:
                row.update(start=start, load=os.getloadavg()[0])
            done[(name, seed, start)] = row
            with open(log, 'a') as file:
                file.write(json.dumps(row) + '\n')
        if (name, seed, start) in done:
            results.setdefault(name, []).append(done[(name, seed, start)])
        else:
            results.setdefault(name, [])
        write_table(results, args)

    def fine_tune(config, seed, load_from):
        return lambda work_dir: run(
            osp.join(CONFIG_DIR, config + '.py'),
            work_dir,
            seed,
            args.qat_epochs,
            args.subset,
            load_from=load_from,
        )[1:]

    if args.fp_checkpoint:
        fp_ckpt = args.fp_checkpoint
        config = osp.join(CONFIG_DIR, 'fp32_finetune_fmnist.py')
        record('FP32', None, lambda w: (evaluate_checkpoint(config, w, fp_ckpt), 0.0))
    else:
        fp_config = osp.join(CONFIG_DIR, 'fp32_resnet18-w8_fmnist.py')
        record(
            'FP32',
            args.fp_seed,
            lambda w: run(fp_config, w, args.fp_seed, args.fp_epochs, args.subset)[1:],
        )
        fp_ckpt = osp.join(
            args.work_dir, f'FP32_seed{args.fp_seed}', f'epoch_{args.fp_epochs}.pth'
        )
    for name, config in runs:
        for seed in args.seeds:
            record(name, seed, fine_tune(config, seed, fp_ckpt))


if __name__ == '__main__':
    main()
