"""PSA on the fashion scenes: baseline vs PSA_p vs PSA_s (seg mIoU, pose AP), and
pose KD from a PSA teacher to the plain pose student.

Every run is the stock downstream ``tools/train.py`` on a config of
``configs/baselines`` / ``configs/psa`` / ``configs/distill`` with
``randomness.seed`` set, evaluated on the 320 ``val`` images of the scenes
``bench`` split (generate first: ``python tools/generate_scenes.py --task seg|pose
--split bench``). Each run leaves ``benchmark.json`` in its work dir; the table is
assembled from every finished run, so separate invocations add up.

``--seg-iters N`` trains the seg arms for N instead of the configs' 2,000
iterations (poly decay ending at N; runs go to their own work dirs and the
table names the schedule). The kd task trains the PSA teacher first; its
'student alone' arm is the pose baseline's run of the same seed when that run
exists (same config, same seed), and a DWPose stage-2 arm of a seed starts
from that seed's run of its stage-1 arm. ``--arms`` runs only the named arms
(all arms of the tasks by default). Each trained run records the 1-minute load
average before and after it.

Usage::

    python benchmarks/psa_scenes.py --tasks pose --seeds 0 1 2 --jobs 2
    python benchmarks/psa_scenes.py --tasks seg --seeds 0 1 2 --seg-iters 1000
    python benchmarks/psa_scenes.py --tasks kd --seeds 0 1 2
    python benchmarks/psa_scenes.py --tasks kd --seeds 1 2 \
        --arms 'student alone' 'heatmap KD (MSE)'
    python benchmarks/psa_scenes.py --table-only --out docs/models/psa.md
"""

import argparse
import glob
import json
import os
import os.path as osp
import shlex
import shutil
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
POSE_BASELINE = 'configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py'
SEG_ITERS = 2000  # the schedule of the seg configs
POSE_ITERS = 300  # the schedule of the pose configs
KD_DIR = 'configs/psa/mmpose/'
DWPOSE_S1 = KD_DIR + 'dwpose-s1_r18-w32-psa-p_to_w16_scenes.py'
DWPOSE_S2 = KD_DIR + 'dwpose-s2_r18-w16_scenes.py'
DWPOSE_S1_SCALED = KD_DIR + 'dwpose-s1-scaled_r18-w32-psa-p_to_w16_scenes.py'
DWPOSE_S2_SCALED = KD_DIR + 'dwpose-s2-scaled_r18-w16_scenes.py'
# DWPose stage-2 config -> the stage-1 config whose student it starts from
STAGE1_OF = {DWPOSE_S2: DWPOSE_S1, DWPOSE_S2_SCALED: DWPOSE_S1_SCALED}
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
            ('baseline', POSE_BASELINE),
            ('PSA_p', 'configs/psa/mmpose/topdown_heatmap_r18-w16-psa-p_scenes.py'),
            ('PSA_s', 'configs/psa/mmpose/topdown_heatmap_r18-w16-psa-s_scenes.py'),
        ],
    ),
    'kd': (
        'mmpose',
        'coco/AP',
        [
            ('student alone', POSE_BASELINE),
            (
                'heatmap KD (MSE)',
                'configs/distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py',
            ),
            ('CWD on heatmaps', KD_DIR + 'cwd_r18-w32-psa-p_to_w16_scenes.py'),
            ('DWPose stage 1', DWPOSE_S1),
            ('DWPose stage 1 + 2', DWPOSE_S2),
            ('DWPose stage 1, scaled weights', DWPOSE_S1_SCALED),
            ('DWPose stage 1 + 2, scaled weights', DWPOSE_S2_SCALED),
        ],
    ),
}


def run_dir(task: str, config: str, seed: int, iters: int) -> str:
    """Work dir of one run (a schedule other than the config's has its own)."""
    name = osp.basename(config)[:-3]
    if task == 'seg' and iters != SEG_ITERS:
        name += f'_it{iters}'
    return osp.join(WORK_ROOT, task, name, f'seed{seed}')


def run_options(task: str, config: str, seed: int, iters: int) -> List[str]:
    """``--cfg-options`` of one run: the seed, a shorter seg schedule, and the
    stage-1 student that DWPose stage 2 starts from and distils itself to."""
    options = [f'randomness.seed={seed}']
    if task == 'seg' and iters != SEG_ITERS:
        options += [
            f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            f'param_scheduler.1.end={iters}',
            f'default_hooks.checkpoint.interval={iters}',
        ]
    if config in STAGE1_OF:
        stage1 = osp.join(
            run_dir(task, STAGE1_OF[config], seed, iters),
            f'iter_{POSE_ITERS}_student.pth',
        )
        if not osp.isfile(stage1):
            raise FileNotFoundError(
                f'{config} (seed {seed}) starts from the stage-1 student '
                f'{stage1}, which does not exist: run the arm of '
                f'{STAGE1_OF[config]} for seed {seed} first'
            )
        options += [f'load_from={stage1}', f'model.teacher.checkpoint={stage1}']
    return options


def reuse_pose_baseline(task: str, config: str, seed: int, work_dir: str):
    """The pose baseline's record of ``seed`` for the kd 'student alone' arm
    (the same config and seed), copied to ``work_dir``; None when absent."""
    source = osp.join(run_dir('pose', config, seed, POSE_ITERS), 'benchmark.json')
    if task != 'kd' or config != POSE_BASELINE or not osp.isfile(source):
        return None
    with open(source) as handle:
        record = dict(json.load(handle), task=task, arm='student alone')
    record['reused_from'] = osp.relpath(source, REPO_ROOT)
    os.makedirs(work_dir, exist_ok=True)
    shutil.copy(source, osp.join(work_dir, 'reused_from_pose_baseline.json'))
    return record


def run_one(item) -> dict:
    """Train one (task, arm, config, seed); write and return its record."""
    task, arm, config, seed, iters = item
    package, metric = TASKS[task][:2]
    work_dir = run_dir(task, config, seed, iters)
    record = reuse_pose_baseline(task, config, seed, work_dir)
    if record is None:
        options = run_options(task, config, seed, iters)
        load_before = os.getloadavg()[0]
        seconds = train(package, osp.join(REPO_ROOT, config), work_dir, options)
        load = [load_before, os.getloadavg()[0]]
        value = metric_percent(metric, final_metrics(work_dir)[metric])
        record = dict(
            task=task,
            arm=arm,
            config=config,
            seed=seed,
            metric=metric,
            value=value,
            train_min=seconds / 60,
            iters=iters,
            load=load,
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


def schedule(record: dict) -> int:
    """Training iterations of a run (records without them ran the config's)."""
    return record.get('iters') or (SEG_ITERS if record['task'] == 'seg' else POSE_ITERS)


def table(records: List[dict], commands: Sequence[str]) -> str:
    """Mean ± std per task, schedule and arm, the per-seed values, the mean
    difference to the first arm of the same task and schedule over the seeds
    both have (-: none in common), and the range of the 1-minute load average
    around the runs (-: not recorded)."""
    lines = [
        f'Reproduce: `{"; ".join(commands)}`',
        '',
        '| task | iters | metric | arm | config | value | per seed '
        '| vs first arm, same seeds (pt) | train min / run | load |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for task, (_, metric, arms) in TASKS.items():
        for iters in sorted({schedule(r) for r in records if r['task'] == task}):
            first: Optional[Dict[int, float]] = None  # seed -> first arm's value
            for arm, config in arms:
                runs = sorted(
                    (
                        r
                        for r in records
                        if r['task'] == task
                        and r['config'] == config
                        and schedule(r) == iters
                    ),
                    key=lambda r: r['seed'],
                )
                if not runs:
                    continue
                values = [r['value'] for r in runs]
                mean = statistics.mean(values)
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                if first is None:
                    first = {r['seed']: r['value'] for r in runs}
                paired = [
                    r['value'] - first[r['seed']] for r in runs if r['seed'] in first
                ]
                gain = f'{statistics.mean(paired):+.1f}' if paired else '-'
                per_seed = ', '.join(f'{r["seed"]}: {r["value"]:.1f}' for r in runs)
                minutes = statistics.mean(r['train_min'] for r in runs)
                loads = [v for r in runs for v in r.get('load', ())]
                load = f'{min(loads):.1f}-{max(loads):.1f}' if loads else '-'
                lines.append(
                    f'| {task} | {iters} | {metric} | {arm} | '
                    f'`{config[len("configs/") :]}` | '
                    f'{mean:.1f} ± {spread:.1f} (n={len(values)}) | {per_seed} | '
                    f'{gain} | {minutes:.1f} | {load} |'
                )
    return '\n'.join(lines)


def reproduce_commands(records: List[dict]) -> List[str]:
    """Commands that reproduce ``records``: one per task, schedule and set of
    seeds, naming the arms (``--arms``) unless that set covers every arm."""
    commands = []
    for task, (_, _, arms) in TASKS.items():
        for iters in sorted({schedule(r) for r in records if r['task'] == task}):
            groups: Dict[tuple, List[str]] = {}  # seeds -> arms, in arm order
            for arm, config in arms:
                seeds = tuple(
                    sorted(
                        r['seed']
                        for r in records
                        if r['task'] == task
                        and r['config'] == config
                        and schedule(r) == iters
                    )
                )
                if seeds:
                    groups.setdefault(seeds, []).append(arm)
            option = (
                f' --seg-iters {iters}' if task == 'seg' and iters != SEG_ITERS else ''
            )
            for seeds, group in groups.items():
                named = ''
                if len(group) < len(arms):
                    named = ' --arms ' + ' '.join(map(shlex.quote, group))
                commands.append(
                    f'python benchmarks/psa_scenes.py --tasks {task}{option} --seeds '
                    + ' '.join(map(str, seeds))
                    + named
                )
    return commands + [
        'python benchmarks/psa_scenes.py --table-only --out docs/models/psa.md'
    ]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--tasks', nargs='+', default=['seg', 'pose', 'kd'], choices=list(TASKS)
    )
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument(
        '--seg-iters',
        type=int,
        default=SEG_ITERS,
        help=f'training iterations of the seg arms (configs: {SEG_ITERS})',
    )
    parser.add_argument(
        '--arms',
        nargs='+',
        choices=sorted({arm for task in TASKS.values() for arm, _ in task[2]}),
        help='run only these arms of the tasks (default: all)',
    )
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--table-only', action='store_true')
    parser.add_argument('--out', help='markdown page for the table')
    args = parser.parse_args(argv)
    if args.seg_iters <= 100:
        parser.error(
            f'--seg-iters must be above 100 (the warm-up), got {args.seg_iters}'
        )
    selected = {arm for task in args.tasks for arm, _ in TASKS[task][2]}
    if args.arms and not set(args.arms) <= selected:
        parser.error(
            f'--arms {sorted(set(args.arms) - selected)} are not arms of --tasks '
            f'{args.tasks} (their arms: {sorted(selected)}); add their task'
        )
    if not args.table_only:
        if 'kd' in args.tasks:
            ensure_teacher()
        # seed by seed, so that a stopped benchmark leaves whole seeds
        items = [
            (task, arm, config, seed, args.seg_iters if task == 'seg' else POSE_ITERS)
            for task in args.tasks
            for seed in args.seeds
            for arm, config in TASKS[task][2]
            if not args.arms or arm in args.arms
        ]
        # DWPose stage 2 starts from its seed's stage-1 student: run it after
        later = [item for item in items if item[2] in STAGE1_OF]
        run_in_pool(args.jobs, run_one, [i for i in items if i not in later])
        run_in_pool(args.jobs, run_one, later)
    records: List[Dict] = []
    for path in glob.glob(osp.join(WORK_ROOT, '*', '*', '*', 'benchmark.json')):
        with open(path) as handle:
            records.append(json.load(handle))
    text = table(records, reproduce_commands(records))
    print(text)
    if args.out:
        write_block(args.out, 'psa_scenes', text)


if __name__ == '__main__':
    main()
