"""PSA on the fashion scenes: baseline vs PSA_p vs PSA_s (seg mIoU, pose AP), and
heatmap KD from a PSA teacher to the plain pose student.

Every run is the stock downstream ``tools/train.py`` on a config of
``configs/baselines`` / ``configs/psa`` / ``configs/distill`` with
``randomness.seed`` set, evaluated on the 320 ``val`` images of the scenes
``bench`` split (generate first: ``python tools/generate_scenes.py --task seg|pose
--split bench``). Each run leaves ``benchmark.json`` in its work dir; the table is
assembled from every finished run, so separate invocations add up.

Usage::

    python benchmarks/psa_scenes.py --tasks pose --seeds 0 1 2 --jobs 2
    # kd trains the PSA teacher first
    python benchmarks/psa_scenes.py --tasks kd --seeds 0 1 2
    python benchmarks/psa_scenes.py --table-only --out docs/models/psa.md
"""

import argparse
import glob
import json
import os.path as osp
import statistics
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from scenes_baselines import (  # noqa: E402
    REPO_ROOT,
    final_metrics,
    metric_percent,
    run_in_pool,
    train,
)

WORK_ROOT = osp.join(REPO_ROOT, 'work_dirs', 'psa_scenes')
PSA_TEACHER = 'configs/psa/mmpose/topdown_heatmap_r18-w32-psa-p_scenes_teacher.py'
# task -> package, metric, [(arm, config)]
TASKS = {
    'seg': (
        'mmseg',
        'mIoU',
        [
            ('baseline', 'configs/baselines/mmseg/fcn_r18-w16_scenes.py'),
            ('PSA_p', 'configs/psa/mmseg/fcn_r18-w16-psa-p_scenes.py'),
            ('PSA_s', 'configs/psa/mmseg/fcn_r18-w16-psa-s_scenes.py'),
        ],
    ),
    'pose': (
        'mmpose',
        'coco/AP',
        [
            ('baseline', 'configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py'),
            ('PSA_p', 'configs/psa/mmpose/topdown_heatmap_r18-w16-psa-p_scenes.py'),
            ('PSA_s', 'configs/psa/mmpose/topdown_heatmap_r18-w16-psa-s_scenes.py'),
        ],
    ),
    'kd': (
        'mmpose',
        'coco/AP',
        [
            (
                'student alone',
                'configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py',
            ),
            (
                'heatmap KD from PSA_p teacher',
                'configs/distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py',
            ),
        ],
    ),
}


def run_one(item) -> dict:
    """Train one (task, arm, config, seed); write and return its record."""
    task, arm, config, seed = item
    package, metric = TASKS[task][:2]
    work_dir = osp.join(WORK_ROOT, task, osp.basename(config)[:-3], f'seed{seed}')
    seconds = train(
        package, osp.join(REPO_ROOT, config), work_dir, [f'randomness.seed={seed}']
    )
    value = metric_percent(metric, final_metrics(work_dir)[metric])
    record = dict(
        task=task,
        arm=arm,
        config=config,
        seed=seed,
        metric=metric,
        value=value,
        train_min=seconds / 60,
    )
    with open(osp.join(work_dir, 'benchmark.json'), 'w') as handle:
        json.dump(record, handle)
    print(json.dumps(record), flush=True)
    return record


def ensure_teacher() -> None:
    """Train the PSA pose teacher (seed 0) into the path the KD config names."""
    name = osp.basename(PSA_TEACHER)[:-3]
    work_dir = osp.join(REPO_ROOT, 'work_dirs', name)
    if not osp.isfile(osp.join(work_dir, 'iter_300.pth')):
        train('mmpose', osp.join(REPO_ROOT, PSA_TEACHER), work_dir)


def table(records: List[dict], commands: Sequence[str]) -> str:
    """Mean ± std per task and arm, the per-seed values and the difference to
    the task's first arm."""
    lines = [
        f'Reproduce: `{"; ".join(commands)}`',
        '',
        '| task | metric | arm | config | value | per seed | vs first arm (pt) '
        '| train min / run |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for task, (_, metric, arms) in TASKS.items():
        first = None
        for arm, config in arms:
            runs = sorted(
                (r for r in records if r['task'] == task and r['config'] == config),
                key=lambda r: r['seed'],
            )
            if not runs:
                continue
            values = [r['value'] for r in runs]
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            first = mean if first is None else first
            per_seed = ', '.join(f'{r["seed"]}: {r["value"]:.1f}' for r in runs)
            minutes = statistics.mean(r['train_min'] for r in runs)
            lines.append(
                f'| {task} | {metric} | {arm} | `{config[len("configs/") :]}` | '
                f'{mean:.1f} ± {spread:.1f} (n={len(values)}) | {per_seed} | '
                f'{mean - first:+.1f} | {minutes:.1f} |'
            )
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--tasks', nargs='+', default=['seg', 'pose', 'kd'], choices=list(TASKS)
    )
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--table-only', action='store_true')
    parser.add_argument('--out', help='markdown page for the table')
    args = parser.parse_args(argv)
    if not args.table_only:
        if 'kd' in args.tasks:
            ensure_teacher()
        items = [
            (task, arm, config, seed)
            for task in args.tasks
            for arm, config in TASKS[task][2]
            for seed in args.seeds
        ]
        run_in_pool(args.jobs, run_one, items)
    records: List[Dict] = []
    for path in glob.glob(osp.join(WORK_ROOT, '*', '*', '*', 'benchmark.json')):
        with open(path) as handle:
            records.append(json.load(handle))
    seed_sets = sorted({(r['task'], r['seed']) for r in records})
    commands = [
        f'python benchmarks/psa_scenes.py --tasks {task} --seeds '
        + ' '.join(str(s) for t, s in seed_sets if t == task)
        for task in TASKS
        if any(t == task for t, _ in seed_sets)
    ] + ['python benchmarks/psa_scenes.py --table-only --out docs/models/psa.md']
    text = table(records, commands)
    print(text)
    if args.out:
        write_block(args.out, 'psa_scenes', text)


if __name__ == '__main__':
    main()
