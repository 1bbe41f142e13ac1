"""Calibration benchmark on Fashion-MNIST: CE, LS, focal, MbLS, Mixup, RankMixup.

Trains every method's config from ``configs/calibrate/mmpretrain/`` with the
mmengine ``Runner`` (CPU-sized: a class-balanced training subset, a few
epochs, the final model), then on the test split reports accuracy, ECE, AECE,
classwise ECE and NLL before and after post-hoc temperature scaling (the
temperature is fitted on the validation hold-out). Writes
``docs/calibrate/results.md``, ``docs/calibrate/results.json`` and one
reliability diagram per method (first seed, test split, no temperature
scaling) to ``docs/calibrate/``.

With ``--converged`` it measures the methods at convergence instead: CE is the
converged Fashion-MNIST student of ``benchmarks/fmnist_converged.py`` (55k
train split, 15 epochs) and every other method (``CONVERGED_MODELS``) its
recipe with only the loss changed, trained (or reused from ``work_dirs/``) by
that script; temperature scaling is fitted on the whole 5k hold-out and the
test split is the whole official 10k. Writes ``docs/calibrate/converged.md``,
``converged.json`` and ``reliability_converged_<method>.png``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/calibration.py \
        [--seeds 0 1 2] [--train-size 2000] [--epochs 12] [--methods ce mrl]
    OMP_NUM_THREADS=1 python benchmarks/calibration.py --converged \
        --seeds 0 1 2 --methods ce mixup mrl
"""

import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner, set_random_seed

from mmcompress.calibrate import (
    bin_statistics,
    calibration_report,
    collect_logits,
    ece_sampling_floor,
    equal_width_edges,
    fit_temperature,
)
from mmcompress.calibrate.functional import top_label
from mmcompress.calibrate.reliability_diagram import (
    draw_reliability_diagram,
    save_image,
)
from mmcompress.testing import shorten_schedule, shrink_data
from mmcompress.utils.batch_norm import recompute_bn_statistics_from_loader

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(ROOT, 'configs', 'calibrate', 'mmpretrain')
METHODS = {
    'ce': ('CE', 'ce_resnet18-w8_fmnist.py'),
    'ls': ('Label smoothing (0.2)', 'ls_resnet18-w8_fmnist.py'),
    'focal': ('Focal (gamma 3)', 'focal_resnet18-w8_fmnist.py'),
    'mbls': ('MbLS (m 6)', 'mbls_resnet18-w8_fmnist.py'),
    'mixup': ('Mixup (alpha 1)', 'mixup_resnet18-w8_fmnist.py'),
    'mrl': (
        'RankMixup MRL (faithful, official CIFAR setting)',
        'rankmixup-mrl_resnet18-w8_fmnist.py',
    ),
    'mrl-short': (
        'RankMixup MRL (faithful, short-schedule setting)',
        'rankmixup-mrl-short_resnet18-w8_fmnist.py',
    ),
    'mrl-perpair': (
        'RankMixup MRL (per-pair)',
        'rankmixup-mrl-perpair_resnet18-w8_fmnist.py',
    ),
    'mndcg': ('RankMixup M-NDCG (M=3)', 'rankmixup-mndcg_resnet18-w8_fmnist.py'),
    'mrl-rawbn': (
        'RankMixup MRL (official CIFAR setting, raw-batch BN statistics)',
        'rankmixup-mrl-rawbn_resnet18-w8_fmnist.py',
    ),
    # the 'mrl' model with its BN running statistics re-estimated after training
    'mrl+bn': (
        'RankMixup MRL (official CIFAR setting), BN statistics re-estimated',
        'rankmixup-mrl_resnet18-w8_fmnist.py',
    ),
    # converged only: the converged recipes without data augmentation
    'ce-noaug': ('CE, no augmentation', 'ce_resnet18-w8_fmnist55k-noaug.py'),
    'mrl-rawbn-noaug': (
        'RankMixup MRL (raw-batch BN statistics), no augmentation',
        'rankmixup-mrl-rawbn_resnet18-w8_fmnist55k-noaug.py',
    ),
    'mrl-noaug': (
        'RankMixup MRL (official CIFAR setting), no augmentation',
        'rankmixup-mrl_resnet18-w8_fmnist55k-noaug.py',
    ),
    'mrl+bn-noaug': (
        'RankMixup MRL (official CIFAR setting), BN statistics re-estimated, '
        'no augmentation',
        'rankmixup-mrl_resnet18-w8_fmnist55k-noaug.py',
    ),
}
RANKMIXUP_METHODS = (
    'mrl',
    'mrl-short',
    'mrl-perpair',
    'mndcg',
    'mrl-rawbn',
    'mrl+bn',
    'mrl-rawbn-noaug',
    'mrl-noaug',
    'mrl+bn-noaug',
)
#: methods whose BN running statistics are re-estimated on up to
#: ``BN_REESTIMATION_IMAGES`` training images (train pipeline, no batch
#: augments) before the test: the same trained model as their ``+bn``-less twin
BN_REESTIMATED = ('mrl+bn', 'mrl+bn-noaug')
BN_REESTIMATION_IMAGES = 10000
# --converged: method -> model key of benchmarks/fmnist_converged.py (its
# converged student recipe; only the loss differs)
CONVERGED_MODELS = {
    'ce': 'student',
    'mixup': 'student_mixup',
    'mrl': 'student_rankmixup',
    'mrl+bn': 'student_rankmixup',
    'mrl-rawbn': 'student_rankmixup_rawbn',
    'ce-noaug': 'student_noaug',
    'mrl-rawbn-noaug': 'student_rankmixup_rawbn_noaug',
    'mrl-noaug': 'student_rankmixup_noaug',
    'mrl+bn-noaug': 'student_rankmixup_noaug',
}
#: methods that exist only at convergence (the shrunk benchmark has --augment)
CONVERGED_ONLY = ('ce-noaug', 'mrl-rawbn-noaug', 'mrl-noaug', 'mrl+bn-noaug')
# --converged: the doc block of each training regime, its methods (the first,
# CE, is the reference of the RankMixup goal) and the title of its sections
CONVERGED_REGIMES = (
    ('calibration_converged', ('ce', 'mixup', 'mrl', 'mrl+bn', 'mrl-rawbn'), ''),
    (
        'calibration_converged_noaug',
        ('ce-noaug', 'mrl-noaug', 'mrl+bn-noaug', 'mrl-rawbn-noaug'),
        ', no augmentation',
    ),
)
DEFAULT_METHODS = ['ce', 'ls', 'focal', 'mbls', 'mixup', 'mrl', 'mrl-short', 'mndcg']
REPORTED = ('accuracy', 'ece', 'aece', 'cece', 'nll')
SHORT_SETTING_NOTE = (
    'Official CIFAR setting: MRL loss weight 0.1, margin 2, Beta(2, 2) '
    '(`rankmixup-mrl_resnet18-w8_fmnist.py`). Short-schedule setting: loss '
    'weight 1, margin 2, Beta(0.5, 0.5) '
    '(`rankmixup-mrl-short_resnet18-w8_fmnist.py`), selected on the '
    'validation split only by `benchmarks/calibration_sweep.py` at this '
    'budget ([tuning.md](tuning.md)); the test split played no part in the '
    'choice. Its ECE varies a lot between seeds (see the per-seed rows). '
    'Train times depend on the load of the shared CPU when each run was '
    'made: compare them within one method only.'
)


def add_training_arguments(parser):
    """The training-budget options shared with ``calibration_sweep.py``."""
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument(
        '--train-size', type=int, default=500, help='class-balanced training subset'
    )
    parser.add_argument(
        '--val-size',
        type=int,
        default=1000,
        help='validation subset (temperature fitting)',
    )
    parser.add_argument(
        '--test-size', type=int, default=5000, help='test subset (0: all 10k)'
    )
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--lr', type=float, default=0.1)
    parser.add_argument(
        '--backbone-strides',
        type=int,
        nargs=3,
        default=[2, 2, 2],
        help='strides of the 3 stages (the configs use '
        '1 2 2; 2 2 2 is ~3x cheaper on CPU)',
    )
    parser.add_argument(
        '--augment',
        action='store_true',
        help="keep the configs' RandomCrop/RandomFlip (off: "
        'the small-data overfitting regime where CE is '
        'clearly over-confident)',
    )
    parser.add_argument(
        '--work-dir', default=osp.join(ROOT, 'work_dirs', 'calibration')
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--methods',
        nargs='+',
        choices=sorted(METHODS),
        help=f'default: {" ".join(DEFAULT_METHODS)}; with --converged: '
        f'{" ".join(CONVERGED_MODELS)}',
    )
    add_training_arguments(parser)
    parser.add_argument('--out-dir', default=osp.join(ROOT, 'docs', 'calibrate'))
    parser.add_argument(
        '--converged',
        action='store_true',
        help='measure the converged models of fmnist_converged.py (methods: '
        f'{", ".join(CONVERGED_MODELS)}) instead of training the shrunk configs; '
        'the training-budget options do not apply',
    )
    parser.add_argument(
        '--from-json',
        action='store_true',
        help='only rewrite results.md from results.json',
    )
    parser.add_argument(
        '--append',
        action='store_true',
        help='add the runs to those of results.json (same '
        'settings; runs already there are skipped)',
    )
    return parser.parse_args()


def benchmark_config(method, seed, args, options=None, run_name=None):
    """The method's config, shrunk to the benchmark budget.

    Args:
        method (str): A key of ``METHODS``.
        seed (int): Random seed of the run.
        args (argparse.Namespace): The options of ``add_training_arguments``.
        options (dict, optional): Dotted config keys to override last
            (``Config.merge_from_dict``), e.g.
            ``{'model.rank_loss.loss_weight': 1.0}``.
        run_name (str, optional): Work-dir name. Defaults to
            ``{method}_seed{seed}``.

    Returns:
        Config: The config to train.
    """
    cfg = Config.fromfile(osp.join(CONFIG_DIR, METHODS[method][1]))
    cfg.work_dir = osp.join(args.work_dir, run_name or f'{method}_seed{seed}')
    cfg.randomness = dict(seed=seed, deterministic=False)
    shrink_data(
        cfg,
        subset_size=dict(
            train=args.train_size, val=args.val_size, test=args.test_size or None
        ),
    )
    cfg.train_dataloader.batch_size = args.batch_size
    if not args.augment:
        cfg.train_dataloader.dataset.pipeline = [dict(type='PackInputs')]
    cfg.optim_wrapper.optimizer.lr = args.lr
    cfg.model.backbone.strides = tuple(args.backbone_strides)
    if args.epochs < 2:
        raise ValueError(
            f'--epochs must be >= 2 (1 warm-up epoch + cosine), got {args.epochs}'
        )
    shorten_schedule(
        cfg,
        epochs=args.epochs,
        log_interval=100,
        save_best=None,
        param_scheduler=[
            dict(
                type='LinearLR',
                start_factor=0.1,
                by_epoch=True,
                begin=0,
                end=1,
                convert_to_iter_based=True,
            ),
            dict(
                type='CosineAnnealingLR',
                by_epoch=True,
                begin=1,
                end=args.epochs,
                eta_min=1e-4,
                convert_to_iter_based=True,
            ),
        ],
    )
    if options:
        cfg.merge_from_dict(options)
    return cfg


def train_model(cfg):
    """Train a config with the ``Runner``.

    Returns:
        tuple: The final model (eval mode) and the training time in seconds.
    """
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model
    model.eval()
    return model, time.perf_counter() - start


def split_logits(model, cfg, split):
    """Head logits and labels of the ``split`` ('val'/'test') dataloader."""
    return collect_logits(
        model, Runner.build_dataloader(cfg[f'{split}_dataloader']), 'head'
    )


def run_one(method, seed, args):
    """Train one method with one seed; return its numbers and diagram."""
    cfg = benchmark_config(method, seed, args)
    model, train_seconds = train_model(cfg)
    return evaluate(model, cfg, method, seed, train_seconds)


def reestimate_bn(model, cfg):
    """Re-estimate the model's BN running statistics on the first
    ``BN_REESTIMATION_IMAGES`` images of its training dataloader (its train
    pipeline with the random generators seeded, without batch augments),
    weights unchanged: what ``BNReestimationHook`` does at the end of training.

    Args:
        model (BaseModel): The trained classifier.
        cfg (Config): Its config (``train_dataloader``).

    Returns:
        int: The number of images used.
    """
    loader_cfg = shrink_data(copy.deepcopy(cfg), splits=('train',)).train_dataloader
    set_random_seed(0)  # the same crops and flips on every call
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    return recompute_bn_statistics_from_loader(model, loader, BN_REESTIMATION_IMAGES)


def evaluate(model, cfg, method, seed, train_seconds):
    """Test-split calibration of a trained model, before and after
    temperature scaling fitted on the validation split (the methods of
    ``BN_REESTIMATED`` re-estimate the BN running statistics first,
    :func:`reestimate_bn`).

    Args:
        model (BaseModel): The trained classifier, in eval mode.
        cfg (Config): Its config (``val_dataloader``, ``test_dataloader``).
        method (str): A key of ``METHODS``.
        seed (int): The training seed.
        train_seconds (float): Wall time of its training.

    Returns:
        tuple: The result record (with ``ece_floor`` and ``ece_floor_std``:
        the mean and std over draws of the ECE of a perfectly calibrated
        model with the same test confidences, see ``ece_sampling_floor``),
        the bin statistics of the test split
        (reliability diagram) and its ECE before scaling.
    """
    if method in BN_REESTIMATED:
        reestimate_bn(model, cfg)
    val_logits, val_labels = split_logits(model, cfg, 'val')
    test_logits, test_labels = split_logits(model, cfg, 'test')
    temperature = fit_temperature(val_logits, val_labels)
    before = calibration_report(test_logits.softmax(dim=1), test_labels)
    after = calibration_report((test_logits / temperature).softmax(dim=1), test_labels)
    confidences, correct = top_label(test_logits.softmax(dim=1), test_labels)
    stats = bin_statistics(confidences, correct, equal_width_edges(15))
    result = dict(
        method=method,
        seed=seed,
        temperature=temperature,
        train_seconds=train_seconds,
        before={k: before[k] for k in REPORTED},
        after={k: after[k] for k in REPORTED},
    )
    floor = ece_sampling_floor(confidences)
    result.update(ece_floor=floor['mean'], ece_floor_std=floor['std'])
    return result, stats, before['ece']


def converged_one(method, seed):
    """Measure one converged model of ``benchmarks/fmnist_converged.py``
    (trained there first unless its checkpoint and result are cached).

    Args:
        method (str): A key of ``CONVERGED_MODELS``.
        seed (int): The training seed.

    Returns:
        tuple: As :func:`evaluate`; the record also names the checkpoint
        and describes its training (wall time, device, epochs, load).
    """
    import fmnist_converged

    model_key = CONVERGED_MODELS[method]
    record = fmnist_converged.run(model_key, seed)
    cfg = Config.fromfile(osp.join(ROOT, fmnist_converged.CONFIGS[model_key]))
    checkpoint = osp.join(ROOT, record['checkpoint'])
    cfg.work_dir = osp.join(osp.dirname(checkpoint), 'calibration')
    cfg.load_from = checkpoint
    shrink_data(cfg, splits=('val', 'test'))
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    model = runner.model
    model.eval()
    chunks = record.get('chunks', [])
    result, stats, ece = evaluate(
        model, cfg, method, seed, sum(chunk['seconds'] for chunk in chunks)
    )
    result.update(
        checkpoint=record['checkpoint'],
        training=fmnist_converged.describe_training(record),
    )
    return result, stats, ece


def mean_std(values, scale=1.0):
    values = [scale * v for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.2f} ± {spread:.2f}'


def _by_method(results):
    by_method = {}
    for r in results:
        by_method.setdefault(r['method'], []).append(r)
    return by_method


def summary_lines(results, methods, train_time=True, reference='ce'):
    """The summary table (mean ± std over seeds) and the RankMixup goal.

    Args:
        results (list[dict]): Records of :func:`evaluate`.
        methods (list[str]): Keys of ``METHODS`` in table order.
        train_time (bool): Add the mean training time per run. Defaults to
            True.
        reference (str): The CE method the goal compares with. Defaults to
            ``'ce'``.

    Returns:
        list[str]: Markdown lines.
    """
    by_method = _by_method(results)
    # runs recorded before the floor was measured have none
    floor = all('ece_floor' in r for r in results)
    lines = [
        '| method | accuracy | ECE | '
        + 'ECE floor | ' * floor
        + 'AECE | classwise ECE | NLL | ECE (TS) | AECE (TS) | T |'
        + ' train time / run (s) |' * train_time,
        '|---' * (9 + floor + train_time) + '|',
    ]
    for method in methods:
        runs = by_method.get(method, [])
        if not runs:
            continue

        def col(stage, key, scale=100.0, runs=runs):
            return mean_std([r[stage][key] for r in runs], scale)

        lines.append(
            f'| {METHODS[method][0]} | {col("before", "accuracy")} | '
            f'{col("before", "ece")} | '
            + (f'{mean_std([r["ece_floor"] for r in runs], 100.0)} | ' if floor else '')
            + f'{col("before", "aece")} | '
            f'{col("before", "cece")} | {col("before", "nll", 1.0)} | '
            f'{col("after", "ece")} | {col("after", "aece")} | '
            f'{mean_std([r["temperature"] for r in runs])} |'
            + f' {statistics.mean(r["train_seconds"] for r in runs):.0f} |'
            * train_time
        )
    ranked = [m for m in methods if m in RANKMIXUP_METHODS and m in by_method]
    if reference not in by_method or not ranked:
        return lines
    ce = {r['seed']: r['before'] for r in by_method[reference]}
    lines += [
        '',
        'Goal: RankMixup ECE ≤ 0.5 × CE ECE with accuracy within 1 point '
        "(means over the method's seeds, CE on the same seeds).",
        '',
        '| method | seeds | ECE / CE ECE | accuracy − CE accuracy (pt) | goal met |',
        '|---|---|---|---|---|',
    ]
    for method in ranked:
        runs = [r for r in by_method[method] if r['seed'] in ce]
        if not runs:
            continue
        seeds = [r['seed'] for r in runs]
        ece = statistics.mean(r['before']['ece'] for r in runs)
        acc = statistics.mean(r['before']['accuracy'] for r in runs)
        ratio = ece / statistics.mean(ce[s]['ece'] for s in seeds)
        delta = 100 * (acc - statistics.mean(ce[s]['accuracy'] for s in seeds))
        met = 'yes' if ratio <= 0.5 and delta >= -1 else 'no'
        lines.append(
            f'| {METHODS[method][0]} | {", ".join(map(str, seeds))} | '
            f'{ratio:.2f} | {delta:+.2f} | {met} |'
        )
    return lines


def seed_lines(results, methods, first_seed, diagram_prefix, title=''):
    """Reliability diagrams of the first seed and per-seed rows.

    Args:
        results (list[dict]): Records of :func:`evaluate`.
        methods (list[str]): Keys of ``METHODS`` in diagram order.
        first_seed (int): The seed of the diagrams.
        diagram_prefix (str): Diagram file names are
            ``<prefix><method>.png``.
        title (str): Appended to the section titles. Defaults to ``''``.

    Returns:
        list[str]: Markdown lines.
    """
    by_method = _by_method(results)
    lines = [
        f'## Reliability diagrams{title} (test split, seed {first_seed}, before TS)',
        '',
    ]
    for method in methods:
        if method in by_method:
            lines.append(f'![{METHODS[method][0]}]({diagram_prefix}{method}.png)')
    lines += [
        '',
        f'## Per-seed numbers{title}',
        '',
        '| method | seed | accuracy | ECE | AECE | NLL | ECE (TS) | T |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for r in results:
        b, a = r['before'], r['after']
        lines.append(
            f'| {METHODS[r["method"]][0]} | {r["seed"]} | '
            f'{100 * b["accuracy"]:.2f} | {100 * b["ece"]:.2f} | '
            f'{100 * b["aece"]:.2f} | {b["nll"]:.4f} | '
            f'{100 * a["ece"]:.2f} | {r["temperature"]:.3f} |'
        )
    return lines


def write_markdown(results, args, path):
    """The page of the shrunk-config benchmark (``results.md``)."""
    command = (
        'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration.py '
        f'--seeds {" ".join(map(str, args.seeds))} --train-size '
        f'{args.train_size} --val-size {args.val_size}'
        + f' --test-size {args.test_size}'
        + f' --epochs {args.epochs} --batch-size {args.batch_size} '
        f'--lr {args.lr} --backbone-strides '
        f'{" ".join(map(str, args.backbone_strides))}'
        + (' --augment' if args.augment else '')
        + f' --methods {" ".join(args.methods)}'
    )
    lines = [
        '# Calibration benchmark (Fashion-MNIST, CPU)',
        '',
        'Generated by `benchmarks/calibration.py` (regenerate this page from '
        '`results.json` with `--from-json`); reproduce with:',
        '',
        f'```\n{command}\n```',
        '',
        'Setup: the configs of `configs/calibrate/mmpretrain/` (student '
        'ResNet-18-CIFAR, 3 stages of widths 8/16/32, SGD momentum 0.9, wd '
        '5e-4, gradient-norm clip 2) shrunk to the CPU budget: stage strides '
        f'{tuple(args.backbone_strides)}, {args.train_size} class-balanced '
        f'training images, {"crop + flip" if args.augment else "no"} '
        f'augmentation, batch {args.batch_size}, lr {args.lr} with 1 warm-up '
        f'epoch then cosine, {args.epochs} epochs, the final model. Test: '
        f'{args.test_size or 10000} images of the official Fashion-MNIST test '
        'split. Temperature scaling (TS) is fitted on '
        f'{args.val_size} held-out validation images. Accuracy, ECE, AECE and '
        'classwise ECE in %, 15 bins; mean ± std over seeds '
        f'{args.seeds}.',
        '',
    ]
    lines += summary_lines(results, args.methods)
    if any(r['method'] == 'mrl-short' for r in results):
        lines += ['', SHORT_SETTING_NOTE]
    lines += ['']
    lines += seed_lines(results, args.methods, args.seeds[0], 'reliability_')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_converged_block(results, path):
    """The generated blocks of ``converged.md``, one per training regime of
    ``CONVERGED_REGIMES`` with runs: the command that measures them, the
    tables (RankMixup against the regime's CE) and where each model comes
    from.

    Args:
        results (list[dict]): Records of :func:`converged_one`.
        path (str): The page.
    """
    for block, regime, title in CONVERGED_REGIMES:
        runs = [r for r in results if r['method'] in regime]
        if not runs:
            continue
        methods = [m for m in regime if any(r['method'] == m for r in runs)]
        seeds = sorted({r['seed'] for r in runs})
        # one command per set of seeds (a method measured on fewer seeds so far)
        groups = {}
        for method in methods:
            method_seeds = tuple(
                sorted(r['seed'] for r in runs if r['method'] == method)
            )
            groups.setdefault(method_seeds, []).append(method)
        commands = [
            '`OMP_NUM_THREADS=1 python benchmarks/calibration.py --converged --seeds '
            f'{" ".join(map(str, group_seeds))} --methods {" ".join(group)}`'
            for group_seeds, group in groups.items()
        ]
        lines = [f'Command{"s" * (len(commands) > 1)}: {"; ".join(commands)}', '']
        lines += summary_lines(runs, methods, train_time=False, reference=regime[0])
        lines += [
            '',
            '| method | seed | checkpoint | training |',
            '|---|---|---|---|',
        ]
        for r in runs:
            lines.append(
                f'| {METHODS[r["method"]][0]} | {r["seed"]} | `{r["checkpoint"]}` | '
                f'{r["training"]} |'
            )
        lines += ['']
        lines += seed_lines(runs, methods, seeds[0], 'reliability_converged_', title)
        write_block(path, block, '\n'.join(lines))


def report_run(result, stats, ece, args, diagram_prefix, diagram_seed):
    """Print one run's numbers; for the seed the page shows diagrams of,
    save its reliability diagram as ``<out_dir>/<diagram_prefix><method>.png``.

    Args:
        result (dict): Its record (:func:`evaluate`).
        stats (BinStatistics): Its test-split bin sums.
        ece (float): Its test ECE before scaling.
        args (Namespace): The command line (``out_dir``).
        diagram_prefix (str): File-name prefix of the diagram.
        diagram_seed (int): The seed of the page's diagrams (a run of
            another seed leaves the diagram as it is).
    """
    print(
        f'[calibration benchmark] {result["method"]} seed {result["seed"]}: acc '
        f'{100 * result["before"]["accuracy"]:.2f} ECE {100 * ece:.2f} '
        f'(floor {100 * result["ece_floor"]:.2f}) -> TS '
        f'{100 * result["after"]["ece"]:.2f} ({result["train_seconds"]:.0f} s)',
        file=sys.stderr,
    )
    if result['seed'] == diagram_seed:
        title = f'{METHODS[result["method"]][0]} (test)'
        path = osp.join(args.out_dir, f'{diagram_prefix}{result["method"]}.png')
        save_image(draw_reliability_diagram(stats, ece, title=title), path)


def main_converged(args):
    """``--converged``: measure the converged models, merge them into
    ``converged.json`` (runs of the same method and seed are replaced) and
    rewrite the block of ``converged.md``."""
    unknown = sorted(set(args.methods) - set(CONVERGED_MODELS))
    if unknown:
        raise SystemExit(
            f'--converged measures the methods {list(CONVERGED_MODELS)}; got '
            f'{unknown} (their converged configs do not exist)'
        )
    json_path = osp.join(args.out_dir, 'converged.json')
    known = {}
    if osp.isfile(json_path):
        with open(json_path) as f:
            known = {(r['method'], r['seed']): r for r in json.load(f)}
    if not args.from_json:
        # the page's diagrams are of its smallest seed (seed_lines)
        diagram_seed = min({seed for _, seed in known} | set(args.seeds))
        for seed in args.seeds:
            for method in args.methods:
                result, stats, ece = converged_one(method, seed)
                known[(method, seed)] = result
                report_run(
                    result, stats, ece, args, 'reliability_converged_', diagram_seed
                )
    order = list(CONVERGED_MODELS)
    results = sorted(
        known.values(), key=lambda r: (r['seed'], order.index(r['method']))
    )
    with open(json_path, 'w') as f:
        json.dump(results, f, indent=1)
    write_converged_block(results, osp.join(args.out_dir, 'converged.md'))


def main():
    args = parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    if not args.methods:
        args.methods = list(CONVERGED_MODELS) if args.converged else DEFAULT_METHODS
    if args.converged:
        main_converged(args)
        return
    converged_only = [m for m in args.methods if m in CONVERGED_ONLY]
    if converged_only:
        raise SystemExit(
            f'{converged_only} exist only with --converged (the shrunk benchmark '
            'switches augmentation with --augment)'
        )
    if args.from_json:
        with open(osp.join(args.out_dir, 'results.json')) as f:
            stored = json.load(f)
        out_dir = args.out_dir
        args = argparse.Namespace(**stored['args'])
        write_markdown(stored['results'], args, osp.join(out_dir, 'results.md'))
        return
    results = []
    if args.append:
        with open(osp.join(args.out_dir, 'results.json')) as f:
            stored = json.load(f)
        results = stored['results']
        args.methods = stored['args']['methods'] + [
            m for m in args.methods if m not in stored['args']['methods']
        ]
    done = {(r['method'], r['seed']) for r in results}
    for seed in args.seeds:
        for method in args.methods:
            if (method, seed) in done:
                continue
            result, stats, ece = run_one(method, seed, args)
            results.append(result)
            report_run(result, stats, ece, args, 'reliability_', args.seeds[0])
            with open(osp.join(args.out_dir, 'results.json'), 'w') as f:
                json.dump(dict(args=vars(args), results=results), f, indent=1)
            write_markdown(results, args, osp.join(args.out_dir, 'results.md'))


if __name__ == '__main__':
    torch.set_num_threads(1)
    main()
