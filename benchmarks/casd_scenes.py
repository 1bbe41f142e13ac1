"""OICR vs OICR + CASD (IW only / LW only / both) on the fashion scenes.

Every run is mmdet's stock ``tools/train.py`` on a config of ``configs/wsod``
with ``randomness.seed`` set: trained from image-level labels only on the 1,600
``train`` images of the scenes ``bench`` split, evaluated on the 320 ``val``
images with their boxes (VOC mAP@0.5 and CorLoc; generate first: ``python
tools/generate_scenes.py --task det --split bench``). Each run leaves
``benchmark.json`` in its work dir; the table is assembled from every finished
run, so separate invocations add up.

Usage::

    python benchmarks/casd_scenes.py --arms oicr casd --seeds 0 1 2
    python benchmarks/casd_scenes.py --arms oicr casd --seeds 0 --iters 700 --flip-only
    python benchmarks/casd_scenes.py --init fmnist --arms oicr casd --flip-only
    python benchmarks/casd_scenes.py --init clslse --arms oicr --iters 700 --flip-only
    python benchmarks/casd_scenes.py --init clslse --cell-streams cls \\
        --arms oicr casd --iters 700 --flip-only
    python benchmarks/casd_scenes.py --init clslse --cell-streams cls \\
        --arms iw --casd-weight 1.0 --iters 700 --flip-only
    python benchmarks/casd_scenes.py --table-only --out docs/models/casd.md

``--casd-weight`` sets ``loss_weight`` of the arm's CASD terms (the configs:
0.1); such runs are listed as their own rows.
"""

import argparse
import glob
import json
import os.path as osp
import statistics
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from machine_load import loadavg  # noqa: E402
from scenes_baselines import REPO_ROOT, final_metrics, train  # noqa: E402

WORK_ROOT = osp.join(REPO_ROOT, 'work_dirs', 'casd_scenes')
OICR = 'configs/wsod/mmdet/oicr_r18-w32_scenes.py'
CASD = 'configs/wsod/mmdet/oicr-casd_r18-w32_scenes.py'
# --init: the backbone starts from a classifier trained once (seed 0, default
# work dir: the path the *init configs load from): 'cls' on the scenes'
# image-level labels (global average pooling), 'clslse' the same with log-sum-exp
# pooling of the class maps and its backbone from 'fmnist' (trained first),
# 'fmnist' on Fashion-MNIST items
INITS = {
    'cls': (
        'mmdet',
        'configs/wsod/mmdet/imgcls_r18-w32_scenes.py',
        {
            OICR: 'configs/wsod/mmdet/oicr_r18-w32-clsinit_scenes.py',
            CASD: 'configs/wsod/mmdet/oicr-casd_r18-w32-clsinit_scenes.py',
        },
    ),
    'clslse': (
        'mmdet',
        'configs/wsod/mmdet/imgcls-lse_r18-w32-fmnistinit_scenes.py',
        {
            OICR: 'configs/wsod/mmdet/oicr_r18-w32-clslseinit_scenes.py',
            CASD: 'configs/wsod/mmdet/oicr-casd_r18-w32-clslseinit_scenes.py',
        },
    ),
    'fmnist': (
        'mmpretrain',
        'configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py',
        {
            OICR: 'configs/wsod/mmdet/oicr_r18-w32-fmnistinit_scenes.py',
            CASD: 'configs/wsod/mmdet/oicr-casd_r18-w32-fmnistinit_scenes.py',
        },
    ),
}
ARMS = {
    'oicr': ('OICR', OICR, []),
    'iw': ('OICR + CASD-IW', CASD, ['model.casd_lw=None']),
    'lw': ('OICR + CASD-LW', CASD, ['model.casd_iw=None']),
    'casd': ('OICR + CASD (IW + LW)', CASD, []),
}
# a classifier that starts from another one's checkpoint
PRETRAIN_FIRST = {'clslse': 'fmnist'}
MAP_KEY, CORLOC_KEY = 'pascal_voc/mAP', 'wsod/CorLoc'
# --cell-streams: inits whose classifier has a linear layer on the RoI level's
# channels (fc.weight / fc.bias) to start the MIDN cell streams from
CELL_INITS = ('cls', 'clslse')
CLS_KEY = 'wsod/cls_mAP'


def pretrain_classifier(init: str) -> None:
    """Train the classifier of ``init`` once (seed 0) if its checkpoint is
    missing: every run of that init starts from the same backbone, as every
    OICR run of the papers starts from the same ImageNet weights."""
    from mmengine.config import Config

    if init in PRETRAIN_FIRST:
        pretrain_classifier(PRETRAIN_FIRST[init])
    package, config, _ = INITS[init]
    last = Config.fromfile(osp.join(REPO_ROOT, config)).train_cfg.max_iters
    work_dir = osp.join(REPO_ROOT, 'work_dirs', osp.basename(config)[:-3])
    if not osp.isfile(osp.join(work_dir, f'iter_{last}.pth')):
        train(package, config, work_dir, ['randomness.seed=0'])


def cell_options(init: str, streams: Sequence[str]) -> List[str]:
    """``--cfg-options`` that make the MIDN ``streams`` cell streams started
    from the linear layer of ``init``'s classifier (the checkpoint its OICR
    configs load).

    Args:
        init (str): One of :data:`CELL_INITS`.
        streams (Sequence[str]): ``'cls'`` and/or ``'det'``.

    Returns:
        list[str]: ``model.head.cell_streams`` and ``model.head.cell_init``.
    """
    if init not in CELL_INITS:
        raise ValueError(
            f"--cell-streams starts the MIDN from a scenes classifier's linear "
            f'layer: give --init one of {CELL_INITS}, got {init!r}'
        )
    _, classifier, _ = INITS[init]
    work_dir = osp.join('work_dirs', osp.basename(classifier)[:-3])
    from mmengine.config import Config

    last = Config.fromfile(osp.join(REPO_ROOT, classifier)).train_cfg.max_iters
    return [
        f'model.head.cell_streams=[{",".join(streams)}]',
        f'model.head.cell_init={work_dir}/iter_{last}.pth',
    ]


def run(
    arm: str,
    seed: int,
    iters: Optional[int],
    flip_only: bool = False,
    init: str = 'scratch',
    cell_streams: Sequence[str] = (),
    casd_weight: Optional[float] = None,
) -> dict:
    """Train and evaluate one arm at one seed; write ``benchmark.json``."""
    name, config, arm_options = ARMS[arm]
    run_name = arm
    if casd_weight is not None:
        if arm == 'oicr':
            raise ValueError('--casd-weight needs a CASD arm (iw, lw, casd)')
        arm_options = arm_options + [
            f'model.{term}.loss_weight={casd_weight}'
            for term in ('casd_iw', 'casd_lw')
            if f'model.{term}=None' not in arm_options
        ]
        run_name = f'{arm}-w{casd_weight:g}'
    schedule = (f'{iters}it' if iters else 'config') + ('-flip' if flip_only else '')
    options = [f'randomness.seed={seed}', *arm_options]
    if cell_streams:
        options += cell_options(init, cell_streams)
        schedule = f'cells{"-".join(cell_streams)}-{schedule}'
    if init != 'scratch':
        config, schedule = INITS[init][2][config], f'{init}init-{schedule}'
        pretrain_classifier(init)
    work_dir = osp.join(WORK_ROOT, schedule, f'{run_name}_seed{seed}')
    if flip_only:
        options.append('model.view_scales=[1.0]')
    if iters:
        options += [
            f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.1.T_max={iters - 50}',
            f'param_scheduler.1.end={iters}',
        ]
    seconds = train('mmdet', config, work_dir, options)
    metrics = final_metrics(work_dir)
    record = dict(
        arm=arm,
        name=name,
        casd_weight=casd_weight,
        options=arm_options,
        config=config,
        seed=seed,
        schedule=schedule,
        mAP=100 * metrics[MAP_KEY],
        CorLoc=metrics[CORLOC_KEY],
        cls_mAP=metrics.get(CLS_KEY),
        seconds=round(seconds, 1),
        load=loadavg().split(),
    )
    with open(osp.join(work_dir, 'benchmark.json'), 'w') as handle:
        json.dump(record, handle, indent=1)
    print(json.dumps(record))
    return record


def collect() -> List[dict]:
    """Every finished run's record."""
    return [
        json.load(open(path))
        for path in sorted(glob.glob(osp.join(WORK_ROOT, '*', '*', 'benchmark.json')))
    ]


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def _row_keys(records: List[dict], schedule: str) -> List[tuple]:
    """(arm, row name, CASD weight) of the records of ``schedule``, arms in
    the order of :data:`ARMS`, the configs' weight (None) first."""
    keys = {
        (r['arm'], r.get('casd_weight')) for r in records if r['schedule'] == schedule
    }
    order = list(ARMS)
    return [
        (arm, ARMS[arm][0] + ('' if w is None else f', weight {w:g}'), w)
        for arm, w in sorted(keys, key=lambda k: (order.index(k[0]), k[1] or 0))
    ]


def markdown_table(records: List[dict]) -> str:
    """One row per (schedule, arm, CASD weight): mean ± std over seeds, seeds
    listed."""
    rows = [
        '| schedule | model | VOC mAP@0.5 (%) | CorLoc (%) | image cls mAP (%) '
        '| seeds | config (options) |',
        '|---|---|---|---|---|---|---|',
    ]
    for schedule in sorted({r['schedule'] for r in records}):
        for arm, name, weight in _row_keys(records, schedule):
            mine = [
                r
                for r in records
                if r['schedule'] == schedule
                and r['arm'] == arm
                and r.get('casd_weight') == weight
            ]
            config = mine[0]['config']
            arm_options = mine[0].get('options', ARMS[arm][2])
            cls_maps = [r['cls_mAP'] for r in mine if r.get('cls_mAP') is not None]
            cls_map = _mean_std(cls_maps) if cls_maps else 'not measured'
            seeds = ', '.join(
                str(r['seed']) for r in sorted(mine, key=lambda r: r['seed'])
            )
            options = ' '.join(arm_options)
            rows.append(
                f'| {schedule} | {name} | {_mean_std([r["mAP"] for r in mine])} | '
                f'{_mean_std([r["CorLoc"] for r in mine])} | {cls_map} | {seeds} | '
                f'`{config}` '
                f'{options} |'
            )
    return '\n'.join(rows)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--arms', nargs='+', choices=list(ARMS), default=['oicr', 'casd']
    )
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--iters', type=int, help='train iterations (config: 600)')
    parser.add_argument(
        '--flip-only',
        action='store_true',
        help='train on 2 views (original, h-flip at scale 1) instead of 4',
    )
    parser.add_argument(
        '--init',
        choices=['scratch', *INITS],
        default='scratch',
        help='backbone from scratch, from the scenes image-level classifier '
        '(cls: average pooling; clslse: log-sum-exp pooling of the class maps, '
        'from the fmnist backbone) or from the Fashion-MNIST classifier (fmnist); '
        'the classifier is trained first if missing',
    )
    parser.add_argument(
        '--cell-streams',
        nargs='+',
        choices=['cls', 'det'],
        default=[],
        help="MIDN streams as the --init classifier's linear layer on the RoI "
        'cells, started from it (OICRHead cell_streams / cell_init)',
    )
    parser.add_argument(
        '--casd-weight',
        type=float,
        help='loss_weight of the CASD terms of the arms (configs: 0.1)',
    )
    parser.add_argument('--table-only', action='store_true')
    parser.add_argument('--out', help='markdown page to write the table block into')
    args = parser.parse_args(argv)
    if not args.table_only:
        for seed in args.seeds:
            for arm in args.arms:
                run(
                    arm,
                    seed,
                    args.iters,
                    args.flip_only,
                    args.init,
                    args.cell_streams,
                    args.casd_weight,
                )
    table = markdown_table(collect())
    print(table)
    if args.out:
        write_block(args.out, 'casd-scenes', table)


if __name__ == '__main__':
    main()
