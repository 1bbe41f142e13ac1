"""Dense-detector distillation and MAL on the fashion scenes, with the stock
mmdet ``tools/train.py``.

Two comparisons, each for every seed:

* **Distillation** (per detector, default GFL and RetinaNet): no KD vs the
  LD-style softmax-KL classification KD vs BCKD, R-18 w32 teacher -> w16
  student. The teacher is trained first when its checkpoint
  ``<teacher-root>/<teacher config>/iter_<N>.pth`` is missing (N: the
  teacher config's ``max_iters`` unless ``--teacher-iters``/``--iters``:
  the path the distillation configs name). Distilled students train with
  their no-KD baseline's schedule.
* **Anchor learning**: RetinaNet vs FreeAnchor vs MAL (w16 backbone).

Every run leaves ``benchmark.json`` in its work dir; runs that already have
one for the same iterations, seed and data are reused, so an interrupted
benchmark resumes. The tables (mean over seeds, per-seed values, difference
to the first arm) replace the block between the markers
``<!-- detection_kd_scenes:begin -->`` / ``<!-- detection_kd_scenes:end -->``
of ``--out`` (appended when absent), with the reproducing command.

Usage (from the repository root)::

    python tools/generate_scenes.py --task det --split bench
    OMP_NUM_THREADS=1 python benchmarks/detection_kd_scenes.py --seeds 0 1 \\
        --out docs/distill/detection.md

A smoke run on the small split (seconds per run)::

    python tools/generate_scenes.py --task det --split small --out /tmp/det_small
    python benchmarks/detection_kd_scenes.py --data-root /tmp/det_small \\
        --iters 4 --work-root /tmp/dkd --teacher-root /tmp/dkd \\
        --out /tmp/dkd/detection.md
"""

import argparse
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from scenes_baselines import (  # noqa: E402
    baseline_record,
    final_metrics,
    run_in_pool,
    train,
)

METRIC = 'coco/bbox_mAP'
DEFAULT_DATA_ROOT = 'data/scenes/det_bench'
BASELINES = 'configs/baselines/mmdet'
DISTILL = 'configs/distill/mmdet'
DETECTORS = ('gfl', 'retinanet', 'atss', 'fcos')
# comparison -> arms (name, config); the first arm is the reference
ANCHOR_ARMS = [
    ('RetinaNet', f'{BASELINES}/retinanet_r18-w16_scenes.py'),
    ('FreeAnchor', f'{BASELINES}/freeanchor_r18-w16_scenes.py'),
    ('MAL', 'configs/mal/mmdet/mal_retinanet_r18-w16_scenes.py'),
]


def teacher_config(detector: str) -> str:
    return f'{BASELINES}/{detector}_r18-w32_scenes_teacher.py'


def student_config(detector: str) -> str:
    return f'{BASELINES}/{detector}_r18-w16_scenes.py'


def config_iters(config: str) -> int:
    """``train_cfg.max_iters`` of a config."""
    from mmengine.config import Config

    return Config.fromfile(osp.join(REPO_ROOT, config)).train_cfg.max_iters


def kd_arms(detector: str) -> List[tuple]:
    """(name, config, overrides) of the distillation comparison."""
    student = osp.join(REPO_ROOT, student_config(detector))
    teacher = osp.join(REPO_ROOT, teacher_config(detector))
    kl = dict(model=dict(student=dict(config=student), teacher=dict(config=teacher)))
    return [
        ('no KD', student_config(detector), {}),
        ('softmax-KL KD', f'{DISTILL}/klkd_gfl_r18-w32_to_w16_scenes.py', kl),
        ('BCKD', f'{DISTILL}/bckd_{detector}_r18-w32_to_w16_scenes.py', {}),
    ]


def _merge(cfg, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            _merge(cfg[key], value)
        else:
            cfg[key] = value


def write_run_config(
    config: str,
    work_dir: str,
    data_root: str,
    iters: Optional[int],
    seed: int,
    overrides: dict,
    schedule_from: Optional[str] = None,
) -> str:
    """Dump the config of one run into its work dir.

    Args:
        config (str): Config path relative to the repository.
        work_dir (str): Work dir of the run.
        data_root (str): Scenes det root.
        iters (int, optional): Training iterations (None: the schedule's).
            The warm-up (50 iterations in the configs) is capped at an
            eighth of the run and the cosine decay ends at ``iters``.
        seed (int): ``randomness.seed``.
        overrides (dict): Nested config overrides (teacher checkpoint...).
        schedule_from (str, optional): Config whose schedule (train loop,
            LR schedule, checkpoint interval) the run takes, so a distilled
            student trains exactly as long as its no-KD baseline.

    Returns:
        str: Path of the dumped config.
    """
    from mmengine.config import Config

    import mmcompress  # noqa: F401
    from mmcompress.datasets.scenes import point_config_at_scenes
    from mmcompress.testing import shorten_schedule

    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    point_config_at_scenes(cfg, data_root)
    _merge(cfg, overrides)
    if schedule_from is not None:
        source = Config.fromfile(osp.join(REPO_ROOT, schedule_from))
        cfg.train_cfg = source.train_cfg
        cfg.param_scheduler = source.param_scheduler
        cfg.default_hooks.checkpoint = source.default_hooks.checkpoint
    cfg.randomness = dict(seed=seed)
    if iters is not None:
        warmup = max(1, min(50, iters // 8))
        shorten_schedule(
            cfg,
            iters=iters,
            log_interval=min(50, iters),
            param_scheduler=[
                dict(
                    type='LinearLR',
                    start_factor=0.01,
                    by_epoch=False,
                    begin=0,
                    end=warmup,
                ),
                dict(
                    type='CosineAnnealingLR',
                    T_max=max(iters - warmup, 1),
                    eta_min_ratio=0.01,
                    by_epoch=False,
                    begin=warmup,
                    end=max(iters, warmup + 1),
                ),
            ],
        )
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, osp.basename(config))
    cfg.dump(path)
    return path


def run_arm(job: dict) -> dict:
    """Train one arm (or reuse its ``benchmark.json``) and return its
    record."""
    record_path = osp.join(job['work_dir'], 'benchmark.json')
    key = dict(
        config=job['config'],
        seed=job['seed'],
        iters=job['iters'],
        data_root=job['data_root'],
        overrides=job['overrides'],
        schedule_from=job['schedule_from'],
    )
    if osp.isfile(record_path):
        with open(record_path) as handle:
            record = json.load(handle)
        if record.get('key') == key:
            return record
    baseline = baseline_record(job['config'])
    if (
        baseline
        and baseline['seed'] == job['seed']
        and not job['overrides']
        and job['iters'] is None
        and job['data_root'] == DEFAULT_DATA_ROOT
    ):
        # this run is the baseline benchmarks/scenes_baselines.py trained
        value, seconds = baseline['value'], baseline['minutes'] * 60
    else:
        path = write_run_config(
            job['config'],
            job['work_dir'],
            job['data_root'],
            job['iters'],
            job['seed'],
            job['overrides'],
            job['schedule_from'],
        )
        seconds = train('mmdet', path, job['work_dir'])
        try:
            value = 100.0 * final_metrics(job['work_dir'])[METRIC]
        except (ValueError, KeyError):
            value = float('nan')  # no detection passed the score threshold
    record = dict(
        key=key, group=job['group'], arm=job['arm'], value=value, minutes=seconds / 60
    )
    os.makedirs(job['work_dir'], exist_ok=True)
    with open(record_path, 'w') as handle:
        json.dump(record, handle, indent=1)
    print(json.dumps(record), flush=True)
    return record


def ensure_teacher(detector: str, args) -> str:
    """The teacher checkpoint of ``detector``, trained when missing."""
    name = osp.basename(teacher_config(detector))[:-3]
    iters = args.teacher_iters or args.iters or config_iters(teacher_config(detector))
    work_dir = osp.join(args.teacher_root, name)
    checkpoint = osp.join(work_dir, f'iter_{iters}.pth')
    if not osp.isfile(checkpoint):
        print(f'training teacher {name} ({iters} iterations)', flush=True)
        path = write_run_config(
            teacher_config(detector), work_dir, args.data_root, iters, 0, {}
        )
        train('mmdet', path, work_dir)
    return osp.abspath(checkpoint)


def _fmt(value: float) -> str:
    return 'n/a' if math.isnan(value) else f'{value:.1f}'


def markdown(
    groups: Dict[str, List[dict]],
    seeds: Sequence[int],
    command: str,
    iters: Optional[int],
    data_root: str,
) -> str:
    """The result tables, one per comparison."""
    schedule = (
        f'{iters} iterations per run' if iters else "each student config's schedule"
    )
    lines = [
        f'COCO bbox mAP (%) on the scenes val split `{data_root}`, '
        f'{schedule}, seeds {list(seeds)}, stock mmdet '
        '`tools/train.py` on CPU. Reproduce with:',
        '',
        '```bash',
        command,
        '```',
        '',
    ]
    for group, records in groups.items():
        lines += [f'**{group}**', '']
        seed_cols = ' | '.join(f'seed {s}' for s in seeds)
        lines += [
            f'| arm | mean mAP | {seed_cols} | vs {records[0]["arm"]} | '
            'train min/run |',
            '|---|---|' + '---|' * len(seeds) + '---|---|',
        ]
        arms = []
        for record in records:
            if record['arm'] not in arms:
                arms.append(record['arm'])
        means = {}
        for arm in arms:
            by_seed = {r['key']['seed']: r for r in records if r['arm'] == arm}
            values = [by_seed[s]['value'] for s in seeds]
            means[arm] = sum(values) / len(values)
            minutes = sum(by_seed[s]['minutes'] for s in seeds) / len(seeds)
            delta = means[arm] - means[arms[0]]
            delta_text = (
                ''
                if arm == arms[0]
                else ('n/a' if math.isnan(delta) else f'{delta:+.1f}')
            )
            lines.append(
                f'| {arm} | {_fmt(means[arm])} | '
                + ' | '.join(_fmt(v) for v in values)
                + f' | {delta_text} | {minutes:.1f} |'
            )
        lines.append('')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--data-root',
        default=DEFAULT_DATA_ROOT,
        help='scenes det root (tools/generate_scenes.py)',
    )
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument(
        '--detectors',
        nargs='+',
        default=['gfl', 'retinanet'],
        choices=DETECTORS,
        help='students of the distillation comparison',
    )
    parser.add_argument(
        '--only',
        nargs='+',
        default=['kd', 'anchors'],
        choices=['kd', 'anchors'],
        help='comparisons to run',
    )
    parser.add_argument(
        '--iters',
        type=int,
        default=None,
        help='training iterations of every run (default: '
        "each student config's max_iters)",
    )
    parser.add_argument(
        '--teacher-iters',
        type=int,
        default=None,
        help='training iterations of the teachers (default: '
        '--iters); their checkpoint is read from / written '
        'to <teacher-root>/<config>/iter_<N>.pth',
    )
    parser.add_argument(
        '--jobs', type=int, default=1, help='runs at a time (one thread each)'
    )
    parser.add_argument('--work-root', default='work_dirs/detection_kd_scenes')
    parser.add_argument(
        '--teacher-root',
        default='work_dirs',
        help='where teachers are read from / trained into',
    )
    parser.add_argument('--out', default='docs/distill/detection.md')
    args = parser.parse_args(argv)
    if not osp.isdir(args.data_root):
        parser.error(
            f'--data-root {args.data_root} does not exist; generate '
            'it with tools/generate_scenes.py --task det'
        )
    for name in ('iters', 'teacher_iters'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    jobs = []

    def add(group, arm, config, seed, name, overrides=None, schedule_from=None):
        jobs.append(
            dict(
                group=group,
                arm=arm,
                config=config,
                seed=seed,
                iters=args.iters,
                data_root=args.data_root,
                overrides=overrides or {},
                schedule_from=schedule_from,
                work_dir=osp.join(args.work_root, f'seed{seed}', name),
            )
        )

    if 'kd' in args.only:
        for detector in args.detectors:
            checkpoint = ensure_teacher(detector, args)
            group = f'{detector} student, w32 teacher'
            for arm, config, overrides in kd_arms(detector):
                if config.startswith(DISTILL):
                    overrides = dict(overrides)
                    overrides.setdefault('model', {})
                    overrides['model'] = dict(
                        overrides['model'],
                        teacher=dict(
                            overrides['model'].get('teacher', {}), checkpoint=checkpoint
                        ),
                    )
                slug = arm.split()[0].lower()
                for seed in args.seeds:
                    add(
                        group,
                        arm,
                        config,
                        seed,
                        f'{detector}_{slug}'
                        if overrides
                        else osp.basename(config)[:-3],
                        overrides,
                        student_config(detector),
                    )
    if 'anchors' in args.only:
        for arm, config in ANCHOR_ARMS:
            for seed in args.seeds:
                add(
                    'RetinaNet vs FreeAnchor vs MAL (w16)',
                    arm,
                    config,
                    seed,
                    osp.basename(config)[:-3],
                )
    # a run shared by two comparisons (the RetinaNet baseline) is trained
    # once and listed in both
    unique = list({job['work_dir']: job for job in jobs}.values())
    by_dir = {
        job['work_dir']: record
        for job, record in zip(unique, run_in_pool(args.jobs, run_arm, unique))
    }
    groups: Dict[str, List[dict]] = {}
    for job in jobs:
        groups.setdefault(job['group'], []).append(
            dict(by_dir[job['work_dir']], group=job['group'], arm=job['arm'])
        )
    command = 'OMP_NUM_THREADS=1 python benchmarks/detection_kd_scenes.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv
    )
    block = markdown(groups, args.seeds, command.strip(), args.iters, args.data_root)
    write_block(args.out, 'detection_kd_scenes', block)
    print(block)


if __name__ == '__main__':
    main()
