"""Class-incremental segmentation on the fashion scenes (split 6-2-2 or
``--split``, overlapped): DKD, its ablations, fine-tuning, MiB and joint training.

    python benchmarks/ciss_scenes.py --seeds 0 1 2 [--arms dkd finetune mib joint]
    python benchmarks/ciss_scenes.py --split 4-1x6 --root work_dirs/ciss_4-1x6

``--split`` goes to every arm's ``tools/ciss.py`` (the table takes its last
step; joint training scores old / new on the split's step-0 classes); give
each split its own ``--root``.

Every arm of a seed runs through ``tools/ciss.py`` (each step by mmseg's
stock ``tools/train.py``) in ``<root>/seed<s>/<arm>`` (root
``work_dirs/ciss_bench``); arms that only change steps >= 1 reuse DKD's step
0. ``--step0-from ROOT`` copies every arm's step 0 from
``ROOT/seed<s>/dkd`` (MiB: ``ROOT/seed<s>/mib``) instead of training it,
and ``--incremental-options`` is passed to every arm's steps >= 1 (before
the arm's own options); ``--joint-options`` reaches joint training (for
example a schedule as long as a longer sequence). Finished steps are skipped
on a rerun. The table
(mean and standard deviation over the seeds that finished, last step) is
printed and written to ``<root>/table.md``, followed by the wall time of every arm
trained by this command and the 1-minute load average before and after it
(kept in ``<root>/runs.json``). Needs ``data/scenes/seg_bench``
(``python tools/generate_scenes.py --task seg --split bench``).
"""

import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # noqa: E402

from mmcompress.incremental.split import parse_split  # noqa: E402
from mmcompress.testing import stock_tool  # noqa: E402

CONFIGS = osp.join('configs', 'incremental', 'mmseg')
DKD = osp.join(CONFIGS, 'dkd_fcn_r18-w16_scenes-6-2-2_step0.py')
# arm: (step-0 config, reuse DKD's step 0, options of steps >= 1)
ARMS = {
    'dkd': (DKD, False, []),
    'finetune': (
        osp.join(CONFIGS, 'finetune_fcn_r18-w16_scenes-6-2-2_step0.py'),
        True,
        [],
    ),
    'mib': (osp.join(CONFIGS, 'mib_fcn_r18-w16_scenes-6-2-2_step0.py'), False, []),
    'bce_kd': (
        DKD,
        True,
        [
            'model.loss_weights.dkd_pos=0',
            'model.loss_weights.dkd_neg=0',
            'model.novel_init=random',
        ],
    ),
    'bce_kd+dkd': (DKD, True, ['model.novel_init=random']),
}
JOINT = osp.join(CONFIGS, 'joint_fcn_r18-w16_scenes.py')
EVALUATORS = ('val_evaluator', 'test_evaluator')
KEYS = ('mIoU_old', 'mIoU_new', 'mIoU_all', 'hIoU')
NUM_CLASSES = 10  # scene garments


def last_metrics(arm: str, seed: int, root: str, split: str = '6-2-2') -> str:
    """The metrics file of the last step of ``arm`` (exists once it finished)."""
    work_dir = osp.join(root, f'seed{seed}', arm)
    if arm == 'joint':
        return osp.join(work_dir, 'metrics.json')
    last = len(parse_split(split, NUM_CLASSES)) - 1
    return osp.join(work_dir, f'step{last}', 'metrics.json')


def step0_source(arm: str, seed: int, root: str, step0_root=None):
    """The sequence whose step 0 ``arm`` copies (None: train its own)."""
    own = 'mib' if arm == 'mib' else 'dkd'
    if step0_root:
        return osp.join(step0_root, f'seed{seed}', own)
    return osp.join(root, f'seed{seed}', own) if ARMS[arm][1] else None


def run_arm(
    arm: str,
    seed: int,
    root: str,
    step0_root=None,
    extra=(),
    split='6-2-2',
    joint_extra=(),
) -> dict:
    work_dir = osp.join(root, f'seed{seed}', arm)
    if arm == 'joint':
        done = osp.join(work_dir, 'metrics.json')
        if not osp.isfile(done):
            base = len(parse_split(split, NUM_CLASSES)[0])
            cmd = [sys.executable, stock_tool('mmseg'), JOINT, '--work-dir', work_dir]
            cmd += ['--cfg-options', f'randomness.seed={seed}']
            cmd += [f'{k}.num_base_classes={base}' for k in EVALUATORS]
            cmd += list(joint_extra)
            subprocess.run(cmd, cwd=REPO, check=True)
            sys.path.insert(0, osp.join(REPO, 'tools'))
            from ciss import final_metrics

            with open(done, 'w') as f:
                json.dump(final_metrics(work_dir), f)
        with open(done) as f:
            return json.load(f)
    config, _, options = ARMS[arm]
    cmd = [sys.executable, osp.join('tools', 'ciss.py'), config]
    cmd += ['--work-dir', work_dir, '--seed', str(seed), '--split', split]
    source = step0_source(arm, seed, root, step0_root)
    if source:
        cmd += ['--step0-from', source]
    if [*extra, *options]:
        cmd += ['--incremental-options', *extra, *options]
    subprocess.run(cmd, cwd=REPO, check=True)
    steps = sorted(glob.glob(osp.join(work_dir, 'step*', 'metrics.json')))
    with open(steps[-1]) as f:
        return json.load(f)


def summarise(root: str, arms, split: str = '6-2-2') -> str:
    lines = [
        '| method | seeds | old mIoU | new mIoU | all mIoU | hIoU |',
        '|---|---|---|---|---|---|',
    ]
    for arm in arms:
        found = []
        for seed_dir in sorted(glob.glob(osp.join(root, 'seed*', ''))):  # dirs only
            seed_dir = osp.dirname(seed_dir)
            seed = int(osp.basename(seed_dir)[4:])
            last = last_metrics(arm, seed, root, split)
            if osp.isfile(last):
                with open(last) as f:
                    found.append(json.load(f))
        if not found:
            continue
        cells = []
        for key in KEYS:
            values = np.array([m[key] for m in found], dtype=float)
            cells.append(f'{values.mean():.1f} ± {values.std():.1f}')
        lines.append(f'| {arm} | {len(found)} | ' + ' | '.join(cells) + ' |')
    runs_file = osp.join(root, 'runs.json')
    if osp.isfile(runs_file):
        with open(runs_file) as f:
            runs = json.load(f)
        lines += ['', '| seed | method | wall min | load before | load after |']
        lines.append('|---|---|---|---|---|')
        for run in runs:
            lines.append(
                f'| {run["seed"]} | {run["arm"]} | {run["wall_s"] / 60:.1f} | '
                f'{run["load_before"]:.2f} | {run["load_after"]:.2f} |'
            )
    return '\n'.join(lines)


def timed_run(arm: str, seed: int, root: str, split='6-2-2', **options) -> None:
    """Run ``arm`` (``options``: the other arguments of :func:`run_arm`) and,
    if it was not finished before, append its wall time and the 1-minute load
    average around it to ``<root>/runs.json``."""
    if osp.isfile(last_metrics(arm, seed, root, split)):
        return
    start, before = time.time(), os.getloadavg()[0]
    run_arm(arm, seed, root, split=split, **options)
    runs_file = osp.join(root, 'runs.json')
    runs = []
    if osp.isfile(runs_file):
        with open(runs_file) as f:
            runs = json.load(f)
    runs.append(
        dict(
            seed=seed,
            arm=arm,
            wall_s=time.time() - start,
            load_before=before,
            load_after=os.getloadavg()[0],
        )
    )
    with open(runs_file, 'w') as f:
        json.dump(runs, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--arms',
        nargs='+',
        default=['dkd', 'finetune', 'mib', 'joint'],
        choices=[*ARMS, 'joint'],
    )
    parser.add_argument(
        '--split',
        default='6-2-2',
        help="scenes split of every arm's steps (e.g. 4-1x6: one class per step)",
    )
    parser.add_argument('--root', default=osp.join('work_dirs', 'ciss_bench'))
    parser.add_argument(
        '--step0-from',
        help='root of another benchmark run whose finished step 0s are copied',
    )
    parser.add_argument(
        '--incremental-options',
        nargs='+',
        default=[],
        help='key=value options of steps >= 1 for every arm',
    )
    parser.add_argument(
        '--joint-options',
        nargs='+',
        default=[],
        help='key=value options of joint training (e.g. its schedule, to match '
        'the iterations of a longer sequence)',
    )
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    for seed in args.seeds:
        for arm in args.arms:
            timed_run(
                arm,
                seed,
                args.root,
                args.split,
                step0_root=args.step0_from,
                extra=args.incremental_options,
                joint_extra=args.joint_options,
            )
    text = summarise(args.root, [*ARMS, 'joint'], args.split)
    with open(osp.join(args.root, 'table.md'), 'w') as f:
        f.write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
