"""Distillation and quantization on the fashion scenes vs the float student.

Two groups of runs, each trained with the stock downstream ``tools/train.py``
and evaluated on the 320 ``val`` images of the scenes ``bench`` split:

* ``kd``: for detection (RetinaNet), segmentation (FCN) and pose (top-down
  heatmaps), the student baseline without distillation vs the distillation
  configs of ``configs/distill/`` (same schedule, same seed, the trained
  teacher of ``benchmarks/scenes_baselines.py``).
* ``quant``: the float student checkpoint vs quantization-aware fine-tuning
  from it (``configs/quant/``, W8A8 and W4A4) and vs a float fine-tune with
  the same schedule (the QAT config with its float model), which separates
  the effect of quantization from that of the extra iterations.

Teachers and float checkpoints are the files the configs name
(``work_dirs/<baseline config>/iter_N.pth``); a missing one is trained first
with ``benchmarks/scenes_baselines.py``'s runner (seed 0). Every run leaves
``benchmark.json`` in its work dir and the tables are assembled from all of
them, so separate invocations add up.

Usage (from the repository root, scenes generated first)::

    python benchmarks/scenes_compression.py --group kd --seeds 0 1 --jobs 2 \\
        --out docs/distill/scenes.md
    python benchmarks/scenes_compression.py --group quant --seeds 0 --jobs 2 \\
        --out docs/quant/scenes.md

``--table-only`` trains nothing and tabulates every finished run of the
group, so tasks run with different seed sets share one table (its
"Reproduce" line lists one command per seed set).
"""

import argparse
import glob
import json
import os
import os.path as osp
import statistics
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from scenes_baselines import (
    BASELINES,
    REPO_ROOT,  # noqa: E402
    baseline_record,
    final_metrics,
    metric_percent,
    run_baseline,
    run_in_pool,
    train,
)

TASKS = {
    'det': dict(package='mmdet', metric='coco/bbox_mAP'),
    'seg': dict(package='mmseg', metric='mIoU'),
    'pose': dict(package='mmpose', metric='coco/AP'),
}

# group -> task -> the float student (config relative to configs/) and its
# runs: (method name, config relative to configs/ or None for the student
# itself, how the run's config is derived from it)
GROUPS = {
    'kd': {
        'det': dict(
            student='baselines/mmdet/gfl_r18-w16_scenes.py',
            runs=[
                ('no KD', None, 'as is'),
                (
                    'PKD (FPN)',
                    'distill/mmdet/pkd_gfl_r18-w32_to_w16_scenes.py',
                    'as is',
                ),
                (
                    'LD-style KL (head)',
                    'distill/mmdet/klkd_gfl_r18-w32_to_w16_scenes.py',
                    'as is',
                ),
                (
                    'BCKD (head)',
                    'distill/mmdet/bckd_gfl_r18-w32_to_w16_scenes.py',
                    'as is',
                ),
            ],
        ),
        'seg': dict(
            student='baselines/mmseg/fcn_r18-w16_scenes.py',
            runs=[
                ('no KD', None, 'as is'),
                (
                    'CWD (logits)',
                    'distill/mmseg/cwd_fcn_r18-w32_to_w16_scenes.py',
                    'as is',
                ),
            ],
        ),
        'pose': dict(
            student='baselines/mmpose/topdown_heatmap_r18-w16_scenes.py',
            runs=[
                ('no KD', None, 'as is'),
                (
                    'heatmap KD',
                    'distill/mmpose/heatmap_kd_r18-w32_to_w16_scenes.py',
                    'as is',
                ),
            ],
        ),
    },
    'quant': {
        'det': dict(
            student='baselines/mmdet/retinanet_r18-w16_scenes.py',
            runs=[
                (
                    'FP32 fine-tune',
                    'quant/mmdet/lsq_w4a4_retinanet_r18-w16_scenes.py',
                    'float model',
                ),
                (
                    'LSQ W8A8',
                    'quant/mmdet/lsq_w8a8_retinanet_r18-w16_scenes.py',
                    'as is',
                ),
                (
                    'LSQ W4A4',
                    'quant/mmdet/lsq_w4a4_retinanet_r18-w16_scenes.py',
                    'as is',
                ),
                (
                    'LBT W8A8G8',
                    'quant/mmdet/lbt_w8a8g8_retinanet_r18-w16_scenes.py',
                    'as is',
                ),
                (
                    'LBT W4A4G4',
                    'quant/mmdet/lbt_w4a4g4_retinanet_r18-w16_scenes.py',
                    'as is',
                ),
            ],
        ),
        'seg': dict(
            student='baselines/mmseg/fcn_r18-w16_scenes.py',
            runs=[
                (
                    'FP32 fine-tune',
                    'quant/mmseg/lsq_w4a4_fcn_r18-w16_scenes.py',
                    'float model',
                ),
                ('LSQ W8A8', 'quant/mmseg/lsq_w8a8_fcn_r18-w16_scenes.py', 'as is'),
                ('LSQ W4A4', 'quant/mmseg/lsq_w4a4_fcn_r18-w16_scenes.py', 'as is'),
            ],
        ),
        'pose': dict(
            student='baselines/mmpose/topdown_heatmap_r18-w16_scenes.py',
            runs=[
                (
                    'FP32 fine-tune',
                    'quant/mmpose/lsq_w4a4_topdown_heatmap_r18-w16_scenes.py',
                    'float model',
                ),
                (
                    'LSQ W8A8',
                    'quant/mmpose/lsq_w8a8_topdown_heatmap_r18-w16_scenes.py',
                    'as is',
                ),
                (
                    'LSQ W4A4',
                    'quant/mmpose/lsq_w4a4_topdown_heatmap_r18-w16_scenes.py',
                    'as is',
                ),
            ],
        ),
    },
}


PAGE_HEADERS = {
    'kd': (
        'Distillation on the fashion scenes: KD vs no KD',
        'Students and teachers are the baselines of docs/scenes.md '
        '(ResNet-18 at width 16 vs 32, from scratch); every student run '
        'has the schedule of its baseline config, the teacher is the '
        'trained seed-0 baseline. Metric on the 320 val images of the '
        'bench split, last checkpoint, evaluated by the stock downstream '
        'metric during training. "vs first row" is the mean difference '
        'to the student without distillation.',
    ),
    'quant': (
        'Quantization on the fashion scenes: QAT vs float',
        'QAT fine-tunes the trained float student (the baseline of '
        'docs/scenes.md, its seed-0 checkpoint is the "FP32 start '
        'point") with the schedule of the quantization config; "FP32 '
        'fine-tune" runs the same schedule on the float model, so the '
        'cost of quantization is the difference to that row. Metric on '
        'the 320 val images of the bench split. "vs first row" is the '
        'difference to the float start point.',
    ),
}


def required_checkpoints(config_path: str) -> List[str]:
    """Teacher checkpoints and ``load_from`` a config needs (repo-relative).

    Args:
        config_path (str): A distillation or quantization config.

    Returns:
        list[str]: The checkpoint paths the config names.
    """
    from mmengine.config import Config

    config = Config.fromfile(config_path)
    paths = []
    teacher = config.model.get('teacher')
    if teacher and teacher.get('checkpoint'):
        paths.append(teacher['checkpoint'])
    if config.get('load_from'):
        paths.append(config.load_from)
    return paths


def ensure_checkpoint(path: str) -> None:
    """Train the baseline whose run produces ``path`` when it is missing.

    Args:
        path (str): ``work_dirs/<baseline config name>/iter_N.pth``.
    """
    if osp.isfile(osp.join(REPO_ROOT, path)):
        return
    run_name = osp.basename(osp.dirname(path))
    entries = [entry for entry in BASELINES if osp.basename(entry[1])[:-3] == run_name]
    if not entries:
        raise FileNotFoundError(
            f'{path} is missing and no baseline of benchmarks/'
            f'scenes_baselines.py writes it (valid run names: '
            f'{[osp.basename(e[1])[:-3] for e in BASELINES]})'
        )
    run_baseline(entries[0], osp.join(REPO_ROOT, 'work_dirs'), seed=0)
    if not osp.isfile(osp.join(REPO_ROOT, path)):
        raise FileNotFoundError(
            f'training {entries[0][1]} did not write {path}: the config and '
            'the checkpoint name it is referred to by disagree'
        )


def derived_config(config: str, how: str, work_dir: str) -> str:
    """The config file a run trains.

    Args:
        config (str): Path relative to ``configs/``.
        how (str): ``'as is'`` or ``'float model'`` (the QAT config with its
            wrapped float model: same data, schedule, optimizer, load_from).
        work_dir (str): Where a derived config is written.

    Returns:
        str: Path of the config to train.
    """
    path = osp.join(REPO_ROOT, 'configs', config)
    if how == 'as is':
        return path
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    if cfg.model.get('type') != 'QuantizedModel':
        raise ValueError(
            f'{config}: "float model" needs a QuantizedModel '
            f'config, got model type {cfg.model.get("type")}'
        )
    cfg.model = cfg.model['model']
    os.makedirs(work_dir, exist_ok=True)
    out = osp.join(work_dir, 'float_finetune_config.py')
    cfg.dump(out)
    return out


def run_method(
    group: str,
    task: str,
    method: str,
    config: Optional[str],
    how: str,
    seed: int,
    work_root: str,
) -> dict:
    """Train one (task, method, seed) run and write its ``benchmark.json``.

    Args:
        group (str): ``'kd'`` or ``'quant'``.
        task (str): ``'det'``, ``'seg'`` or ``'pose'``.
        method (str): Name of the method (a row of the table).
        config (str, optional): Config relative to ``configs/``; None: the
            group's float student of the task.
        how (str): See :func:`derived_config`.
        seed (int): ``randomness.seed`` of the run.
        work_root (str): Parent of the group's run directories.

    Returns:
        dict: The record.
    """
    spec = dict(TASKS[task], student=GROUPS[group][task]['student'])
    slug = method.lower().replace(' ', '_').replace('(', '').replace(')', '')
    work_dir = osp.join(work_root, group, f'{task}_{slug}_seed{seed}')
    record_path = osp.join(work_dir, 'benchmark.json')
    if osp.isfile(record_path):
        with open(record_path) as handle:
            return json.load(handle)
    baseline = baseline_record(spec['student'])
    if config is None and baseline and baseline['seed'] == seed:
        # the student baseline with this seed is this very run
        seconds = baseline['minutes'] * 60
        metrics = baseline['metrics']
    else:
        config_path = derived_config(config or spec['student'], how, work_dir)
        seconds = train(
            spec['package'], config_path, work_dir, [f'randomness.seed={seed}']
        )
        metrics = final_metrics(work_dir)
    record = dict(
        group=group,
        task=task,
        method=method,
        config=config or spec['student'],
        seed=seed,
        metric=spec['metric'],
        value=metric_percent(spec['metric'], metrics[spec['metric']]),
        metrics=metrics,
        minutes=seconds / 60,
    )
    os.makedirs(work_dir, exist_ok=True)
    with open(record_path, 'w') as handle:
        json.dump(record, handle, indent=1)
    print(json.dumps(record), flush=True)
    return record


def float_student_records(tasks: Sequence[str]) -> List[dict]:
    """The float students the quantization runs start from (the records of
    their baseline runs)."""
    records = []
    for task in tasks:
        spec = dict(TASKS[task], student=GROUPS['quant'][task]['student'])
        base = baseline_record(spec['student'])
        if base:
            records.append(
                dict(
                    group='quant',
                    task=task,
                    method='FP32 start point',
                    config=spec['student'],
                    seed=base['seed'],
                    metric=spec['metric'],
                    value=base['value'],
                    minutes=base['minutes'],
                )
            )
    return records


def finished_records(group: str, tasks: Sequence[str], work_root: str) -> List[dict]:
    """Every finished run of ``group`` (its ``benchmark.json``) for
    ``tasks``, in the table's row order (task, method as listed, seed)."""
    order = {
        (task, method): i
        for task in TASKS
        for i, (method, _, _) in enumerate(GROUPS[group][task]['runs'])
    }
    records = []
    for path in glob.glob(osp.join(work_root, group, '*', 'benchmark.json')):
        with open(path) as handle:
            record = json.load(handle)
        if record['task'] in tasks and (record['task'], record['method']) in order:
            records.append(record)
    task_order = list(TASKS)
    return sorted(
        records,
        key=lambda r: (
            task_order.index(r['task']),
            order[r['task'], r['method']],
            r['seed'],
        ),
    )


def run_commands(group: str, records: List[dict], out: Optional[str]) -> str:
    """The commands that train ``records`` (one per set of seeds) and
    tabulate them."""
    seeds: Dict[str, set] = {}
    for record in records:
        seeds.setdefault(record['task'], set()).add(record['seed'])
    by_seeds: Dict[tuple, List[str]] = {}
    for task in TASKS:
        if task in seeds:
            by_seeds.setdefault(tuple(sorted(seeds[task])), []).append(task)
    script = 'python benchmarks/scenes_compression.py --group ' + group
    return '; '.join(
        [
            f'{script} --tasks {" ".join(tasks)} --seeds {" ".join(map(str, s))}'
            for s, tasks in by_seeds.items()
        ]
        + [f'{script} --table-only' + (f' --out {out}' if out else '')]
    )


def format_cell(values: List[float]) -> str:
    """``mean ± std (n)`` or the single value."""
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return (
        f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'
        f' (n={len(values)})'
    )


def markdown(group: str, records: List[dict], command: str) -> str:
    """The results table of one group."""
    title, setup = PAGE_HEADERS[group]
    lines = [
        f'# {title}',
        '',
        setup,
        '',
        f'Reproduce: `{command}`',
        '',
        '| task | metric | method | config | value | per seed | '
        'vs first row (pt) | train min / run |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for task in TASKS:
        methods: Dict[str, List[dict]] = {}
        for record in records:
            if record['task'] == task:
                methods.setdefault(record['method'], []).append(record)
        first = None
        for method, runs in methods.items():
            runs = sorted(runs, key=lambda r: r['seed'])
            values = [r['value'] for r in runs]
            mean = statistics.mean(values)
            first = mean if first is None else first
            per_seed = ', '.join(f'{r["seed"]}: {r["value"]:.1f}' for r in runs)
            minutes = statistics.mean(r['minutes'] for r in runs)
            lines.append(
                f'| {task} | {runs[0]["metric"]} | {method} | '
                f'`{runs[0]["config"]}` | {format_cell(values)} | '
                f'{per_seed} | {mean - first:+.1f} | {minutes:.1f} |'
            )
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the selected group and write its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--group', choices=sorted(GROUPS), required=True)
    parser.add_argument(
        '--tasks', nargs='+', choices=sorted(TASKS), default=sorted(TASKS)
    )
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--work-dir', default='work_dirs/scenes_compression')
    parser.add_argument('--out', help='markdown file for the table')
    parser.add_argument(
        '--table-only',
        action='store_true',
        help='train nothing: tabulate every finished run of '
        'the group for --tasks, whatever its seed',
    )
    args = parser.parse_args(argv)
    if args.table_only:
        records = finished_records(args.group, args.tasks, args.work_dir)
        if args.group == 'quant':
            records = float_student_records(args.tasks) + records
        command = run_commands(args.group, records, args.out)
        _write(markdown(args.group, records, command), args.out)
        return

    plan = [
        (task, method, config, how, seed)
        for task in args.tasks
        for method, config, how in GROUPS[args.group][task]['runs']
        for seed in args.seeds
    ]
    needed = sorted(
        {
            path
            for _, _, config, _, _ in plan
            if config
            for path in required_checkpoints(osp.join(REPO_ROOT, 'configs', config))
        }
    )
    run_in_pool(args.jobs, ensure_checkpoint, needed)
    records = run_in_pool(
        args.jobs,
        lambda item: run_method(args.group, *item, work_root=args.work_dir),
        plan,
    )
    if args.group == 'quant':
        records = float_student_records(args.tasks) + records
    command = 'python benchmarks/scenes_compression.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv
    )
    _write(markdown(args.group, records, command), args.out)


def _write(table: str, out: Optional[str]) -> None:
    print(table)
    if out:
        with open(out, 'w') as handle:
            handle.write(table + '\n')


if __name__ == '__main__':
    main()
