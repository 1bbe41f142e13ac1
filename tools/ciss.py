"""Run every step of a class-incremental split and write the results table.

    python tools/ciss.py configs/incremental/mmseg/dkd_fcn_r18-w16_scenes-6-2-2_step0.py

Step ``t`` runs the config ``<family>_step<t>.py`` next to the given step-0
config, or, for a step without its own file, the last step file before it
with ``step=t`` (model and data) and the new head's optimizer key moved to
``classifier.heads.<t + 1>.``. Each step is trained by mmseg's stock
``tools/train.py`` in its own process, in ``<work-dir>/step<t>/``, with
``load_from`` = the previous step's last checkpoint; its final validation
(old / new / all mIoU, hIoU) is stored in ``step<t>/metrics.json``. A step
whose ``metrics.json`` exists is skipped, so a stopped sequence resumes at
the first unfinished step. The table goes to ``<work-dir>/ciss_table.md``.
"""

import argparse
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

from mmengine.config import Config, DictAction

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # noqa: E402

from mmcompress.incremental.split import parse_split  # noqa: E402
from mmcompress.testing import stock_tool  # noqa: E402

KEYS = ('mIoU_old', 'mIoU_new', 'mIoU_all', 'hIoU')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='step-0 config (<family>_step0.py)')
    parser.add_argument('--split', help='override the split of every step')
    parser.add_argument('--work-dir', help='default: work_dirs/ciss/<family>')
    parser.add_argument('--seed', type=int, help='randomness.seed of every step')
    parser.add_argument(
        '--step0-from',
        help='work dir of another sequence whose finished step 0 is reused '
        '(copied; step 1 loads the copy)',
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='set in every step'
    )
    parser.add_argument(
        '--incremental-options',
        nargs='+',
        action=DictAction,
        help='set in steps >= 1 only',
    )
    return parser.parse_args(argv)


def family_of(config: str) -> str:
    """The config path without ``_step<k>.py``."""
    match = re.match(r'^(.*)_step(\d+)\.py$', config)
    if match is None or match.group(2) != '0':
        raise ValueError(
            f'{config} is not a step-0 config: give <family>_step0.py, whose '
            'siblings <family>_step1.py... define the later steps.'
        )
    return match.group(1)


def step_config(family: str, step: int) -> Config:
    """The config of ``step`` (module docstring)."""
    files = {
        int(m.group(1)): p
        for p in glob.glob(f'{family}_step*.py')
        if (m := re.search(r'_step(\d+)\.py$', p))
    }
    base = max(k for k in files if k <= step)
    cfg = Config.fromfile(files[base])
    if base != step:
        keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
        new = [k for k in keys if k.startswith(f'classifier.heads.{base + 1}.')]
        for key in list(keys):
            if key.startswith('classifier.heads.'):
                keys.pop(key)
        if new:
            keys[f'classifier.heads.{step + 1}.'] = dict(lr_mult=10.0, decay_mult=1.0)
    cfg.model.step = step
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader):
            cfg[loader].dataset.step = step
    return cfg


def last_checkpoint(step_dir: str) -> str:
    with open(osp.join(step_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def final_metrics(step_dir: str) -> dict:
    """The last validation record of the run in ``step_dir``."""
    records = []
    for path in sorted(glob.glob(osp.join(step_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    found = [r for r in records if 'mIoU_all' in r]
    if not found:
        raise RuntimeError(f'{step_dir}: the run logged no validation metrics.')
    return {k: found[-1][k] for k in KEYS}


def run_step(args, family: str, step: int, work_dir: str) -> dict:
    step_dir = osp.join(work_dir, f'step{step}')
    done = osp.join(step_dir, 'metrics.json')
    if osp.isfile(done):
        with open(done) as f:
            return json.load(f)
    cfg = step_config(family, step)
    if args.split:
        cfg.model.split = args.split
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[loader].dataset.split = args.split
    if args.seed is not None:
        cfg.randomness = dict(seed=args.seed)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if step and args.incremental_options:
        cfg.merge_from_dict(args.incremental_options)
    cfg.load_from = (
        last_checkpoint(osp.join(work_dir, f'step{step - 1}')) if step else None
    )
    cfg.work_dir = step_dir
    os.makedirs(step_dir, exist_ok=True)
    path = osp.join(step_dir, f'step{step}.py')
    cfg.dump(path)
    subprocess.run(
        [sys.executable, stock_tool('mmseg'), path, '--work-dir', step_dir],
        cwd=REPO,
        check=True,
    )
    metrics = final_metrics(step_dir)
    with open(done, 'w') as f:
        json.dump(metrics, f)
    return metrics


def reuse_step0(source: str, step_dir: str) -> None:
    """Copy a finished step 0 (checkpoint, logs, ``metrics.json``) to
    ``step_dir``; its ``last_checkpoint`` then names the copied checkpoint,
    which step 1 loads.

    Args:
        source (str): ``step0`` directory of another sequence.
        step_dir (str): ``step0`` directory of this sequence.
    """
    if not osp.isfile(osp.join(source, 'metrics.json')):
        raise FileNotFoundError(
            f'--step0-from: {source} holds no finished step 0 (no metrics.json); '
            'run that sequence first (tools/ciss.py with its --work-dir).'
        )
    shutil.copytree(source, step_dir)
    name = osp.basename(last_checkpoint(source))
    with open(osp.join(step_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(step_dir, name))


def table(rows) -> str:
    lines = [
        '| step | classes | old mIoU | new mIoU | all mIoU | hIoU |',
        '|---|---|---|---|---|---|',
    ]
    for step, classes, m in rows:
        lines.append(
            f'| {step} | {classes} | ' + ' | '.join(f'{m[k]:.2f}' for k in KEYS) + ' |'
        )
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    family = family_of(args.config)
    base = Config.fromfile(args.config)
    split = args.split or base.model.split
    steps = parse_split(split, base.model.num_classes)
    name = osp.basename(family)
    work_dir = args.work_dir or osp.join('work_dirs', 'ciss', name)
    os.makedirs(work_dir, exist_ok=True)
    if args.step0_from and not osp.exists(osp.join(work_dir, 'step0')):
        reuse_step0(osp.join(args.step0_from, 'step0'), osp.join(work_dir, 'step0'))
    rows = []
    for step, classes in enumerate(steps):
        metrics = run_step(args, family, step, work_dir)
        rows.append((step, f'{classes[0]}-{classes[-1]}', metrics))
    text = f'{name}, split {split}\n\n' + table(rows) + '\n'
    with open(osp.join(work_dir, 'ciss_table.md'), 'w') as f:
        f.write(text)
    print(text)
    return rows


if __name__ == '__main__':
    main()
