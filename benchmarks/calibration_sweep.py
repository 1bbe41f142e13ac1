"""Hyper-parameter sweep of the calibration methods, on the validation split.

Trains one method of ``benchmarks/calibration.py`` (same configs, same
CPU-sized budget, same training code) for every point of a grid of config
overrides and records accuracy / ECE / AECE / classwise ECE / NLL of the
final model on the **validation** hold-out only (the test split is never
looked at, so the selected setting is not tuned on it). Runs are appended to
``docs/calibrate/tuning.json`` (runs already there are skipped) and
``docs/calibrate/tuning_results.md`` is regenerated from it (the analysis is in
``docs/calibrate/tuning.md``).

Selection rule (per training budget and method, among the settings run on
the most seeds; means over seeds, CE on the same seeds): the lowest
validation ECE among the settings that meet the issue's goal on validation
(ECE <= 0.5 x CE's, accuracy at most 1 point below CE's); if none does, the
most accurate among those with ECE <= 0.5 x CE's; if none does, the lowest
ECE among those within 1 point of CE's accuracy.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/calibration_sweep.py --method mrl \\
        --grid model.rank_loss.loss_weight=0.1,0.5,1 model.mixup_alpha=1,2 \\
        [--seeds 0] [--train-size 500 --epochs 30]
    python benchmarks/calibration_sweep.py --report   # only rewrite the page
"""

import argparse
import ast
import itertools
import json
import os.path as osp
import statistics
import sys

import torch
from calibration import (
    METHODS,
    ROOT,
    add_training_arguments,
    benchmark_config,
    split_logits,
    train_model,
)

from mmcompress.calibrate import calibration_report

OUT_DIR = osp.join(ROOT, 'docs', 'calibrate')
BUDGET_KEYS = (
    'train_size',
    'val_size',
    'epochs',
    'batch_size',
    'lr',
    'backbone_strides',
    'augment',
)
REPORTED = ('accuracy', 'ece', 'aece', 'cece', 'nll', 'oe', 'ue')
ACCURACY_TOLERANCE = 0.01
ECE_RATIO_GOAL = 0.5


def parse_grid(items):
    """``['a.b=1,2', 'c=x']`` -> list of override dicts (the product).

    Values are Python literals (``2``, ``0.5``, ``True``); anything else is
    kept as a string.
    """
    axes = []
    for item in items:
        key, sep, values = item.partition('=')
        if not sep or not key or not values:
            raise ValueError(f'grid entries are KEY=V1,V2,..., got {item!r}')
        parsed = []
        for value in values.split(','):
            try:
                parsed.append(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                parsed.append(value)
        axes.append([(key, value) for value in parsed])
    return [dict(point) for point in itertools.product(*axes)]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--method', choices=sorted(METHODS))
    parser.add_argument(
        '--grid',
        nargs='*',
        default=[],
        help='KEY=V1,V2,... config overrides; the sweep '
        'runs their product (none: the config as it is)',
    )
    add_training_arguments(parser)
    parser.add_argument('--out-dir', default=OUT_DIR)
    parser.add_argument(
        '--report',
        action='store_true',
        help='only rewrite tuning_results.md from tuning.json',
    )
    args = parser.parse_args()
    if not args.report and args.method is None:
        parser.error('--method is required unless --report is given')
    return args


def budget_of(args):
    return {key: getattr(args, key) for key in BUDGET_KEYS}


def run_key(run):
    return (
        json.dumps(run['budget'], sort_keys=True),
        run['method'],
        json.dumps(run['options'], sort_keys=True),
        run['seed'],
    )


def run_name(method, options, seed, budget):
    slug = '_'.join(
        f'{key.split(".")[-1]}{value}' for key, value in sorted(options.items())
    )
    return (
        f'sweep_{method}_{slug or "config"}_n{budget["train_size"]}'
        f'_e{budget["epochs"]}_seed{seed}'
    )


def sweep_one(method, options, seed, args):
    """Train one grid point and measure it on the validation split."""
    cfg = benchmark_config(
        method, seed, args, options, run_name(method, options, seed, budget_of(args))
    )
    model, train_seconds = train_model(cfg)
    logits, labels = split_logits(model, cfg, 'val')
    report = calibration_report(logits.softmax(dim=1), labels)
    return dict(
        method=method,
        options=options,
        seed=seed,
        budget=budget_of(args),
        train_seconds=train_seconds,
        val={key: report[key] for key in REPORTED},
    )


def describe(options):
    return (
        ', '.join(
            f'{key.replace("model.", "")}={value}'
            for key, value in sorted(options.items())
        )
        or 'config'
    )


def mean_of(runs, key):
    return statistics.mean(r['val'][key] for r in runs)


def compare_with_ce(runs, ce_runs):
    """``(ECE / CE ECE, accuracy - CE accuracy)`` on the runs' seeds, or
    None when CE lacks one of them."""
    seeds = [r['seed'] for r in runs]
    if not all(seed in ce_runs for seed in seeds):
        return None
    ce = [ce_runs[seed] for seed in seeds]
    return (
        mean_of(runs, 'ece') / mean_of(ce, 'ece'),
        mean_of(runs, 'accuracy') - mean_of(ce, 'accuracy'),
    )


def select_settings(settings, ce_runs):
    """The selected setting of every method (see the module docstring).

    Args:
        settings (dict): ``(method, options_json) -> runs`` of one budget.
        ce_runs (dict): ``seed -> CE run`` of the same budget.

    Returns:
        dict: ``method -> options_json`` of the selected setting.
    """
    candidates = {}
    for (method, options_json), runs in settings.items():
        comparison = compare_with_ce(runs, ce_runs)
        if method == 'ce' or comparison is None:
            continue
        candidates.setdefault(method, []).append((len(runs), *comparison, options_json))
    selected = {}
    for method, rows in candidates.items():
        most_seeds = max(row[0] for row in rows)
        rows = [row for row in rows if row[0] == most_seeds]
        accurate = [r for r in rows if r[2] >= -ACCURACY_TOLERANCE]
        meet_goal = [r for r in accurate if r[1] <= ECE_RATIO_GOAL]
        halved = [r for r in rows if r[1] <= ECE_RATIO_GOAL]
        if meet_goal:
            best = min(meet_goal, key=lambda r: r[1])
        elif halved:
            best = max(halved, key=lambda r: r[2])
        elif accurate:
            best = min(accurate, key=lambda r: r[1])
        else:
            continue
        selected[method] = best[3]
    return selected


def write_report(runs, path):
    """Tables per budget: mean validation numbers and the selected rows."""
    groups = {}
    for run in runs:
        budget = json.dumps(run['budget'], sort_keys=True)
        setting = (run['method'], json.dumps(run['options'], sort_keys=True))
        groups.setdefault(budget, {}).setdefault(setting, []).append(run)
    lines = [
        '## Sweep results (validation split)',
        '',
        'Generated by `benchmarks/calibration_sweep.py` from `tuning.json` '
        '(mean over the listed seeds; ECE/AECE/classwise ECE and accuracy '
        'in %, 15 bins, final model, no temperature scaling). "ECE / CE" '
        'and "Δacc" compare with CE on the same seeds. Selected (**bold**), '
        'per method among its settings run on the most seeds: the lowest '
        'validation ECE among those meeting the goal on validation (ECE ≤ '
        '0.5 × CE, accuracy ≥ CE − 1 pt); if none, the most accurate among '
        'those with ECE ≤ 0.5 × CE; if none, the lowest ECE within 1 pt of '
        "CE's accuracy.",
        '',
    ]
    for budget_json, settings in groups.items():
        budget = json.loads(budget_json)
        ce_runs = {
            r['seed']: r
            for (method, _), rs in settings.items()
            if method == 'ce'
            for r in rs
        }
        lines += [
            f'### {budget["train_size"]} training images, '
            f'{budget["epochs"]} epochs, batch {budget["batch_size"]}, '
            f'lr {budget["lr"]}, strides {tuple(budget["backbone_strides"])}'
            f'{", crop + flip" if budget["augment"] else ""}',
            '',
            '| method | setting | seeds | val accuracy | val ECE | val AECE '
            '| val classwise ECE | val NLL | ECE / CE | Δacc vs CE (pt) '
            '| train s / run |',
            '|---' * 11 + '|',
        ]
        selected = select_settings(settings, ce_runs)
        order = sorted(
            settings.items(),
            key=lambda item: (
                item[0][0] != 'ce',
                item[0][0],
                -len(item[1]),
                mean_of(item[1], 'ece'),
            ),
        )
        for (method, options_json), rs in order:
            seeds = sorted(r['seed'] for r in rs)
            comparison = compare_with_ce(rs, ce_runs)
            if method != 'ce' and comparison is not None:
                ratio, delta = (f'{comparison[0]:.2f}', f'{100 * comparison[1]:+.2f}')
            else:
                ratio = delta = '—'
            bold = '**' if selected.get(method) == options_json else ''
            setting = describe(json.loads(options_json))
            lines.append(
                f'| {method} (`{METHODS[method][1]}`) | '
                f'{bold}{setting}{bold} | '
                f'{",".join(map(str, seeds))} | '
                f'{100 * mean_of(rs, "accuracy"):.2f} | '
                f'{100 * mean_of(rs, "ece"):.2f} | '
                f'{100 * mean_of(rs, "aece"):.2f} | '
                f'{100 * mean_of(rs, "cece"):.2f} | '
                f'{mean_of(rs, "nll"):.3f} | {ratio} | {delta} | '
                f'{statistics.mean(r["train_seconds"] for r in rs):.0f} |'
            )
        lines.append('')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


def main():
    args = parse_args()
    json_path = osp.join(args.out_dir, 'tuning.json')
    runs = []
    if osp.exists(json_path):
        with open(json_path) as f:
            runs = json.load(f)
    report_path = osp.join(args.out_dir, 'tuning_results.md')
    if args.report:
        write_report(runs, report_path)
        return
    done = {run_key(r) for r in runs}
    for seed in args.seeds:
        for options in parse_grid(args.grid):
            key = run_key(
                dict(
                    budget=budget_of(args),
                    method=args.method,
                    options=options,
                    seed=seed,
                )
            )
            if key in done:
                continue
            run = sweep_one(args.method, options, seed, args)
            runs.append(run)
            print(
                f'[calibration sweep] {args.method} {describe(options)} '
                f'seed {seed}: val acc {100 * run["val"]["accuracy"]:.2f} '
                f'ECE {100 * run["val"]["ece"]:.2f} '
                f'({run["train_seconds"]:.0f} s)',
                file=sys.stderr,
            )
            with open(json_path, 'w') as f:
                json.dump(runs, f, indent=1)
            write_report(runs, report_path)


if __name__ == '__main__':
    torch.set_num_threads(1)
    main()
