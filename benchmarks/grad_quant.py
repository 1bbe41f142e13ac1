"""Gradient quantization (LBT) on Fashion-MNIST: accuracy, gradient error, cost.

Three measurements, written to one markdown file (and a PNG next to it):

1. accuracy (test split, 10k images) of the W/A/G configs over seeds:
   ``lbt_minmax_w4a4g4`` (gamma = 1), ``lbt_gamma08_w4a4g4`` /
   ``lbt_gamma06_w4a4g4`` (fixed gamma 0.8 / 0.6), ``lbt_mse_w4a4g4`` (the
   expected-MSE interval), ``lbt_w4a4g4`` (LBT), ``lsq_w4a4`` (4/4/32: no
   gradient quantization), ``lbt_w6a6g6``, ``lbt_w8a8g8`` and
   ``fp32_finetune`` (float reference), each fine-tuned from the float student
   (``--fp-checkpoint``, checked first to hold exactly the float weights of
   every benchmarked model) through mmengine's Runner with
   ``benchmarks/quant_accuracy.py``'s ``run`` (overrides: epochs, subset,
   seed, work dir), all configs of one seed before the next seed; the float
   checkpoint itself is tested once. Finished runs are kept in
   ``results.jsonl`` of the work dir and skipped when the script is run again.
   The report adds the same-seed differences of 4/4/4 LBT to each 4-bit
   baseline;
2. the gradient quantization error per layer over training: mean squared
   error of ``g_q - g`` over all elements and over the 0.1% largest ``|g|``,
   for LBT and gamma = 1 at 4 bits, as a plot (``--recipe finetune``:
   ``--error-iters`` iterations at constant LR; ``--recipe scratch``: the
   seed-0 runs of the accuracy protocol, also tested);
3. the emulation cost: median training-step time (forward, backward, SGD
   step; CPU, one process, the models timed round-robin after warm-up, the
   load average recorded) of the 4/4/4 LBT model over the 4/4/32 LSQ model.

``--parts`` picks which of the three run (all by default), e.g.
``--parts timing`` alone on a quiet machine.

Usage (the Fashion-MNIST table of docs/quant/grad_quant.md; about 1 CPU hour):
    OMP_NUM_THREADS=1 python benchmarks/grad_quant.py --parts accuracy error \
        --seeds 0 1 2 --epochs 1 --subset 30000 \
        --configs fp32_finetune_fmnist lsq_w4a4_fmnist \
        lbt_minmax_w4a4g4_fmnist lbt_w4a4g4_fmnist lbt_w6a6g6_fmnist \
        lbt_w8a8g8_fmnist \
        --fp-checkpoint work_dirs/student_r18-w8_fmnist55k/epoch_15.pth \
        --out docs/quant/grad_quant_results.md
From scratch (the second table of the doc; about 1 CPU hour): random
initialization, the float student's SGD schedule (``--recipe scratch``):
    OMP_NUM_THREADS=1 python benchmarks/grad_quant.py --recipe scratch \
        --parts accuracy error --seeds 0 1 2 --epochs 3 --subset 20000 \
        --configs fp32_finetune_fmnist lsq_w4a4_fmnist \
        lbt_minmax_w4a4g4_fmnist lbt_gamma08_w4a4g4_fmnist \
        lbt_gamma06_w4a4g4_fmnist lbt_mse_w4a4g4_fmnist lbt_w4a4g4_fmnist \
        lbt_w8a8g8_fmnist \
        --work-dir work_dirs/bench_grad_quant_scratch \
        --out docs/quant/grad_quant_scratch_results.md
Smoke setting (minutes; numbers meaningless): --seeds 0 --epochs 1 --subset 256
    --fp-checkpoint none --error-iters 5 --timing-steps 3
"""

import argparse
import functools
import json
import os
import os.path as osp
import statistics

import matplotlib
import torch
import torch.nn.functional as F
from machine_load import LoadRecord, add_load_argument, interleaved_ms
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from quant_accuracy import (
    CONFIG_DIR,
    CONVERGED,
    build_runner,
    check_fp_checkpoint,
    evaluate_checkpoint,
    run,
)

import mmcompress  # noqa: F401
from mmcompress.quant import LBTGradQuantizer
from mmcompress.testing import shorten_schedule, shrink_data

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

ACCURACY_CONFIGS = {
    'FP32 fine-tune': 'fp32_finetune_fmnist',
    '4/4/32 (LSQ, float gradients)': 'lsq_w4a4_fmnist',
    '4/4/4 gamma=1 (min-max)': 'lbt_minmax_w4a4g4_fmnist',
    '4/4/4 fixed gamma=0.8': 'lbt_gamma08_w4a4g4_fmnist',
    '4/4/4 fixed gamma=0.6': 'lbt_gamma06_w4a4g4_fmnist',
    '4/4/4 MSE interval': 'lbt_mse_w4a4g4_fmnist',
    '4/4/4 LBT': 'lbt_w4a4g4_fmnist',
    '6/6/6 LBT': 'lbt_w6a6g6_fmnist',
    '8/8/8 LBT': 'lbt_w8a8g8_fmnist',
}
# The float row's label per recipe (the same config, fmnist's float student).
FP_LABEL = {'finetune': 'FP32 fine-tune', 'scratch': 'FP32'}
# The from-scratch recipe's optimizer and LR schedule: the float student's.
SCRATCH_SCHEDULE = osp.join(
    osp.dirname(osp.dirname(CONFIG_DIR)), '_base_', 'schedules', 'fmnist_sgd.py'
)
RECIPES = ('finetune', 'scratch')
# The baselines of the same-seed differences to 4/4/4 LBT, in table order.
PAIRED_BASELINES = (
    '4/4/4 gamma=1 (min-max)',
    '4/4/4 fixed gamma=0.8',
    '4/4/4 fixed gamma=0.6',
    '4/4/4 MSE interval',
    '4/4/32 (LSQ, float gradients)',
)
ERROR_CONFIGS = {'LBT': 'lbt_w4a4g4_fmnist', 'gamma=1': 'lbt_minmax_w4a4g4_fmnist'}
TIMING_CONFIGS = {
    'FP32': 'fp32_resnet18-w8_fmnist',
    '4/4/32': 'lsq_w4a4_fmnist',
    '4/4/4': 'lbt_w4a4g4_fmnist',
}
PARTS = ('accuracy', 'error', 'timing')
START = 'FP32 start (checkpoint, no fine-tune)'


def _protocol(args):
    """The fields that key a cached result besides its label and seed."""
    return dict(recipe=args.recipe, epochs=args.epochs, subset=args.subset)


def _load_results(path, protocol):
    """{(label, seed): top1} of the rows of ``path`` run under ``protocol``."""
    done = {}
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if all(r.get(k) == v for k, v in protocol.items()):
                    done[(r['label'], r['seed'])] = r['top1']
    return done


def _append_result(path, protocol, label, seed, top1, seconds):
    with open(path, 'a') as f:
        row = dict(protocol, label=label, seed=seed, top1=top1, seconds=seconds)
        f.write(json.dumps(row) + '\n')


def recipe_options(recipe, config, seed):
    """The ``cfg_options`` of one run of ``config`` under ``recipe``.

    ``'finetune'``: none (the QAT config as shipped: Adam, cosine, started
    from the float checkpoint). ``'scratch'``: the float student's optimizer
    and LR schedule (``configs/_base_/schedules/fmnist_sgd.py``: SGD, linear
    warm-up over the first epoch, cosine), keeping the QAT recipe's
    ``paramwise_cfg`` (no weight decay on the quantizer parameters), and the
    stochastic rounding of the gradient quantizer seeded with ``seed``.
    """
    if recipe == 'finetune':
        return None
    schedule = Config.fromfile(SCRATCH_SCHEDULE)
    options = dict(
        optim_wrapper=dict(
            optimizer=dict(schedule.optim_wrapper.optimizer.to_dict(), _delete_=True)
        ),
        param_scheduler=[s.to_dict() for s in schedule.param_scheduler],
    )
    if Config.fromfile(config).model.get('quant', {}).get('g'):
        options['model'] = dict(quant=dict(g=dict(seed=seed)))
    return options


def start_accuracy(args, done, path):
    """Test top-1 of the float checkpoint itself (no fine-tuning), cached."""
    if (START, None) not in done:
        top1 = evaluate_checkpoint(
            osp.join(CONFIG_DIR, 'fp32_finetune_fmnist.py'),
            osp.join(args.work_dir, 'fp32_start'),
            args.fp_checkpoint,
        )['accuracy/top1']
        done[(START, None)] = top1
        _append_result(path, _protocol(args), START, None, top1, 0.0)
    return done[(START, None)]


def accuracy_configs(args):
    """{label: config name} of the ``--configs`` arms, in table order."""
    return {
        FP_LABEL[args.recipe] if name == 'fp32_finetune_fmnist' else label: name
        for label, name in ACCURACY_CONFIGS.items()
        if name in args.configs
    }


def accuracy(args):
    """Train/test every config for every seed (all configs of a seed before the
    next seed); returns ({label: [top1...]}, start top-1 or None). Each finished
    (config, seed) is appended to ``results.jsonl`` of the work dir with its
    protocol (recipe, epochs, subset) and skipped when the script runs again
    with the same work dir and protocol."""
    path = osp.join(args.work_dir, 'results.jsonl')
    done = _load_results(path, _protocol(args))
    load_from = None if args.fp_checkpoint == 'none' else args.fp_checkpoint
    start = start_accuracy(args, done, path) if load_from else None
    configs = accuracy_configs(args)
    for seed in args.seeds:
        for label, name in configs.items():
            if (label, seed) in done:
                continue
            work_dir = osp.join(args.work_dir, f'{args.recipe}_{name}_seed{seed}')
            config = osp.join(CONFIG_DIR, name + '.py')
            _, metrics, seconds = run(
                config,
                work_dir,
                seed,
                args.epochs,
                args.subset,
                load_from=load_from,
                cfg_options=recipe_options(args.recipe, config, seed),
            )
            done[(label, seed)] = metrics['accuracy/top1']
            _append_result(
                path, _protocol(args), label, seed, done[(label, seed)], seconds
            )
    acc = {label: [done[(label, s)] for s in args.seeds] for label in configs}
    return acc, start


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


def _error_runner(args, name, work_dir):
    """The Runner of one gradient-error run of config ``name``.

    ``'finetune'``: ``args.error_iters`` iterations from ``args.fp_checkpoint``
    at the config's constant initial LR, seed 0. ``'scratch'``: the seed-0 run
    of the accuracy protocol itself (:func:`recipe_options`, ``args.epochs``,
    ``args.subset``, the float student's schedule; ``--error-iters`` unused),
    so the recorded errors are those of a table row.
    """
    config = osp.join(CONFIG_DIR, name + '.py')
    options = recipe_options(args.recipe, config, 0)
    if args.recipe == 'scratch':
        return build_runner(
            config, work_dir, 0, args.epochs, args.subset, cfg_options=options
        )
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(options)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    cfg.load_from = None if args.fp_checkpoint == 'none' else args.fp_checkpoint
    shorten_schedule(cfg, iters=args.error_iters, log_interval=50)
    cfg.param_scheduler = []
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    shrink_data(cfg, subset_size=dict(train=max(args.subset, 128)))
    return Runner.from_cfg(cfg)


def _error_key(args, name):
    """The ``errors.json`` key of one gradient-error run."""
    if args.recipe == 'scratch':
        return f'{name}|scratch|{args.epochs}|{args.subset}|seed0'
    return f'{name}|{args.error_iters}|{args.fp_checkpoint}|{args.subset}'


def gradient_error(args):
    """Per-layer gradient error over training of the ``ERROR_CONFIGS`` arms.

    Cached in ``errors.json`` of the work dir (per method and protocol, see
    :func:`_error_key`). A ``--recipe scratch`` run is also tested; its test
    top-1 is kept under ``errors.json['top1']``.

    Returns:
        tuple: ``{method: {layer: [per-iteration dict]}}`` and ``{method:
        test top-1}`` (the tested runs only).
    """
    path = osp.join(args.work_dir, 'errors.json')
    cache = {}
    if osp.isfile(path):
        with open(path) as f:
            cache = json.load(f)
    out, top1 = {}, {}
    for label, name in ERROR_CONFIGS.items():
        key = _error_key(args, name)
        if key not in cache:
            work_dir = osp.join(args.work_dir, f'error_{args.recipe}_{name}')
            runner = _error_runner(args, name, work_dir)
            recorder = _ErrorRecorder()
            runner.register_hook(recorder, priority='LOWEST')
            runner.train()
            if args.recipe == 'scratch':
                cache.setdefault('top1', {})[key] = runner.test()['accuracy/top1']
            cache[key] = recorder.records
            with open(path, 'w') as f:
                json.dump(cache, f)
        out[label] = cache[key]
        if key in cache.get('top1', {}):
            top1[label] = cache['top1'][key]
    return out, top1


def _moving_average(values, parts=20):
    """Mean over a window of ``len(values) // parts`` (at least 1) iterations."""
    window = max(1, len(values) // parts)
    return [
        statistics.mean(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def plot_error(errors, path):
    """One panel per quantized layer: MSE of the 0.1% largest |g| (solid) and
    of all elements (dashed) per iteration (moving average over 5% of the
    iterations), one colour per method."""
    layers = sorted(next(iter(errors.values())))
    cols = 4
    rows = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows))
    axes = axes.ravel()
    for ax, layer in zip(axes, layers):
        for i, (label, records) in enumerate(errors.items()):
            for key, style in (('mse_large', '-'), ('mse_all', '--')):
                ax.plot(
                    _moving_average([r[key] for r in records[layer]]),
                    style,
                    color=f'C{i}',
                    linewidth=0.7,
                    label=f'{label}, {"0.1% largest" if key == "mse_large" else "all"}',
                )
        ax.set_yscale('log')
        ax.set_title(
            layer.replace('backbone.', '').replace('.grad_quantizer', ''), fontsize=8
        )
        ax.tick_params(labelsize=7)
    for ax in axes[len(layers) :]:
        ax.axis('off')
    axes[0].legend(fontsize=6)
    fig.suptitle(
        '4-bit gradient quantization MSE per layer vs training iteration '
        '(moving average over 5% of the iterations)'
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


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
    steps = {
        label: functools.partial(_sgd_step, model, optimizer, images, labels)
        for label, (model, optimizer) in models.items()
    }
    # 2 warm-up rounds (the quantizers initialize in the first)
    ms = interleaved_ms(steps, iters=args.timing_steps, warmup=2)
    return {label: value / 1000 for label, value in ms.items()}


def _sgd_step(model, optimizer, images, labels) -> None:
    loss = F.cross_entropy(model(images, mode='tensor'), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _goal_lines(args, mean, start):
    """The goals of the arms in ``mean`` (a goal whose arms did not run is
    left out)."""
    fp = FP_LABEL[args.recipe]
    goals = [
        ('4/4/4 LBT', '4/4/4 gamma=1 (min-max)', 'gamma=1', '>= +2'),
        ('4/4/4 LBT', '4/4/32 (LSQ, float gradients)', '4/4/32', '>= -3'),
        ('8/8/8 LBT', fp, fp, '>= -0.3'),
    ]
    lines = []
    for arm, ref, ref_name, goal in goals:
        if arm in mean and ref in mean:
            extra = ''
            if ref == fp and start is not None:
                extra = f'; - FP32 start: {mean[arm] - start:+.2f} pt'
            lines.append(
                f'- {arm} - {ref_name}: {mean[arm] - mean[ref]:+.2f} pt{extra} '
                f'(goal {goal}).'
            )
    return lines


def _accuracy_lines(args, acc, start):
    mean = {k: statistics.mean(v) for k, v in acc.items()}
    std = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in acc.items()}
    if args.recipe == 'scratch':
        protocol = (
            "from random initialization with the float student's SGD schedule "
            f'({osp.relpath(SCRATCH_SCHEDULE)}; cosine cut to the epochs), '
            'rounding noise seeded with the run seed'
        )
    else:
        protocol = f'start: {args.fp_checkpoint}'
    lines = [
        f'Seeds {args.seeds}, {args.epochs} epoch(s) on a {args.subset}-image '
        f'class-balanced subset of the 55k train split, {protocol}; test split '
        '(10k images), top-1 %.',
        '',
    ]
    if start is not None:
        lines += [f'{START}: {start:.2f}.', '']
    lines += [
        '| W/A/G | ' + ' | '.join(f'seed {s}' for s in args.seeds) + ' | mean | std |',
        '|---|' + '---|' * (len(args.seeds) + 2),
    ]
    lines += [
        f'| {label} | '
        + ' | '.join(f'{v:.2f}' for v in values)
        + f' | {mean[label]:.2f} | {std[label]:.2f} |'
        for label, values in acc.items()
    ]
    lines += ['', *_goal_lines(args, mean, start), '']
    lines += _paired_lines(acc, args.seeds)
    return lines


def _paired_lines(acc, seeds, arm='4/4/4 LBT'):
    """Same-seed differences of ``arm`` to each 4-bit baseline in ``acc``.

    The arms of one seed share the weight initialization and the data order,
    so the per-seed difference resolves what the spread over seeds hides.

    Args:
        acc (dict): ``{label: [top-1 per seed]}``.
        seeds (list[int]): The seeds of the columns.
        arm (str): The compared arm. Defaults to ``'4/4/4 LBT'``.

    Returns:
        list[str]: A markdown table (empty without ``arm`` or a baseline).
    """
    refs = [label for label in PAIRED_BASELINES if label in acc]
    if arm not in acc or not refs:
        return []
    lines = [
        f'Same-seed differences {arm} - baseline (pt):',
        '',
        '| baseline | '
        + ' | '.join(f'seed {s}' for s in seeds)
        + f' | mean ± std | {arm} ahead |',
        '|---|' + '---|' * (len(seeds) + 2),
    ]
    for ref in refs:
        diff = [a - b for a, b in zip(acc[arm], acc[ref])]
        std = statistics.stdev(diff) if len(diff) > 1 else 0.0
        ahead = sum(d > 0 for d in diff)
        lines.append(
            f'| {ref} | '
            + ' | '.join(f'{d:+.2f}' for d in diff)
            + f' | {statistics.mean(diff):+.2f} ± {std:.2f} | '
            f'{ahead} of {len(diff)} seeds |'
        )
    return [*lines, '']


def _error_lines(args, errors, top1, plot_path):
    iters = len(next(iter(next(iter(errors.values())).values())))
    lines = [
        f'Gradient quantization error per layer over {iters} '
        f'iterations (seed 0): ![error]({osp.basename(plot_path)})',
        '',
    ]
    if top1:
        lines += [
            'Test top-1 of these runs (the seed-0 runs of the accuracy protocol, '
            'recorded): ' + ', '.join(f'{k} {v:.2f}' for k, v in top1.items()) + '.',
            '',
        ]
    lines += [
        'Mean over the last quarter of the iterations, per layer '
        '(LBT / gamma=1 ratio of the MSE):',
        '',
        '| layer | '
        + ' | '.join(f'{m} MSE large | {m} MSE all | {m} gamma' for m in errors)
        + ' | ratio large | ratio all |',
        '|---|' + '---|' * (3 * len(errors) + 2),
    ]
    tail = {
        m: {
            layer: {
                k: statistics.mean(r[k] for r in rows[-max(1, len(rows) // 4) :])
                for k in ('mse_large', 'mse_all', 'gamma')
            }
            for layer, rows in layers.items()
        }
        for m, layers in errors.items()
    }
    lbt, ref = tail['LBT'], tail['gamma=1']
    for layer in sorted(lbt):
        cells = ' | '.join(
            f'{t[layer]["mse_large"]:.2e} | {t[layer]["mse_all"]:.2e} | '
            f'{t[layer]["gamma"]:.3f}'
            for t in tail.values()
        )
        short = layer.replace('backbone.', '').replace('.grad_quantizer', '')
        lines.append(
            f'| {short} | {cells} | '
            f'{lbt[layer]["mse_large"] / ref[layer]["mse_large"]:.2f} | '
            f'{lbt[layer]["mse_all"] / ref[layer]["mse_all"]:.2f} |'
        )
    lines.append('')
    return lines


def write(args, acc, start, errors, top1, times, load, plot_path):
    """Print the markdown report of the parts that ran, and write it to
    ``args.out`` when given."""
    lines = ['# Gradient quantization (LBT) on Fashion-MNIST', '']
    lines += [f'Command: `{args.command}`', '']
    if acc:
        lines += _accuracy_lines(args, acc, start)
    if errors:
        lines += _error_lines(args, errors, top1, plot_path)
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
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--subset', type=int, default=30000)
    parser.add_argument(
        '--recipe',
        choices=RECIPES,
        default='finetune',
        help="'finetune': the QAT configs as shipped, from --fp-checkpoint; "
        "'scratch': from random initialization with the float student's SGD "
        'schedule (see recipe_options)',
    )
    parser.add_argument(
        '--fp-checkpoint',
        default=None,
        help="float student checkpoint, or 'none' (default: "
        'work_dirs/student_r18-w8_fmnist55k/epoch_15.pth for --recipe finetune, '
        'none for --recipe scratch)',
    )
    parser.add_argument(
        '--configs',
        nargs='+',
        choices=list(ACCURACY_CONFIGS.values()),
        default=list(ACCURACY_CONFIGS.values()),
        help='the accuracy arms to run (default: all)',
    )
    parser.add_argument(
        '--error-iters',
        type=int,
        default=200,
        help='iterations of the --recipe finetune error runs (--recipe scratch '
        'records the seed-0 run of the accuracy protocol instead)',
    )
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
    if args.fp_checkpoint is None:
        args.fp_checkpoint = 'none' if args.recipe == 'scratch' else CONVERGED
    if args.recipe == 'scratch' and args.fp_checkpoint != 'none':
        raise ValueError(
            '--recipe scratch trains from random initialization: drop '
            f'--fp-checkpoint {args.fp_checkpoint}'
        )
    needs_checkpoint = {'accuracy', 'error'} & set(args.parts)
    if (
        needs_checkpoint
        and args.fp_checkpoint != 'none'
        and not osp.isfile(args.fp_checkpoint)
    ):
        raise FileNotFoundError(
            f'--fp-checkpoint {args.fp_checkpoint} does not exist: train '
            'configs/baselines/mmpretrain/student_r18-w8_fmnist55k.py first, or pass '
            '--recipe scratch (training from scratch with the float schedule) '
            'or --fp-checkpoint none (the QAT recipe from random initialization)'
        )
    os.makedirs(args.work_dir, exist_ok=True)
    if needs_checkpoint and args.fp_checkpoint != 'none':
        check_fp_checkpoint(
            args.fp_checkpoint, [*ACCURACY_CONFIGS.values(), *ERROR_CONFIGS.values()]
        )
    acc, start = accuracy(args) if 'accuracy' in args.parts else ({}, None)
    errors, top1 = gradient_error(args) if 'error' in args.parts else ({}, {})
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
    write(args, acc, start, errors, top1, times, load, plot_path)


if __name__ == '__main__':
    main()
