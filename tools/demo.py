"""README command 1: a real compression job on Fashion-MNIST, end to end.

Every step is a config of ``configs/`` run by ``tools/train.py`` and evaluated by
``tools/test.py`` (the same tools a user runs), on a class-balanced subset so the
whole demo takes minutes on a 2-core CPU:

1. teacher: ResNet-18 (widths 16-128) trained with cross-entropy;
2. student: 3-stage ResNet-18 (widths 8-32, 16x fewer parameters) with CE;
3. the same student distilled from the teacher (vanilla KD, ``DistillModel``);
4. the CE student quantized to W4A4 with LSQ (QAT from its float checkpoint);
5. the student trained with RankMixup (M-NDCG, official loss settings, mixed
   copies normalized with the raw batch's batch-norm statistics, the student's
   optimizer) for calibration.

All models are evaluated on the official 10k test set: top-1 accuracy, expected
calibration error (15 bins), parameters, training time. The terminal shows one
line per stage (with its progress while it runs) and the final table; the full
mmengine logs go to ``<work-dir>/<stage>/train.log`` and ``test.log``, the table
to ``<work-dir>/results.md``.

Reproducible: every run is seeded (``randomness=dict(seed=0,
deterministic=True)``) and every tool runs with ``--threads`` intra-op threads
(default 2, whatever the machine has), so two runs print the same numbers.

Usage:
    python tools/demo.py [--train-size 10000] [--epochs 3] [--qat-epochs 3]
                         [--test-size N] [--threads 2] [--work-dir work_dirs/demo]
"""

import argparse
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Optional

from mmcompress.utils.safe_load import safe_torch_load

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')

STEPS = [
    # name, config, what it shows
    ('teacher', 'configs/baselines/mmpretrain/fmnist_teacher.py', 'ResNet-18 w16, CE'),
    (
        'student',
        'configs/baselines/mmpretrain/fmnist_student.py',
        'ResNet-18 w8 (3 stages), CE',
    ),
    (
        'student + KD',
        'configs/distill/mmpretrain/kd_fmnist.py',
        'vanilla KD from the teacher (tau 4)',
    ),
    (
        'student W4A4',
        'configs/quant/mmpretrain/lsq_w4a4_fmnist.py',
        'LSQ QAT from the CE student',
    ),
    (
        'student + RankMixup',
        'configs/calibrate/mmpretrain/'
        'rankmixup-mndcg-rawbn-fmnistsgd_resnet18-w8_fmnist.py',
        'M-NDCG calibration training (official setting, raw-batch BN)',
    ),
]

# mmengine's iteration lines: "Epoch(train)  [2][ 25/79]", "Epoch(test) [5/20]"
PROGRESS = re.compile(
    r'Epoch\((train|val|test)\)\s*(?:\[(\d+)\])?\s*'
    r'\[\s*(\d+)/(\d+)\]'
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--train-size',
        type=int,
        default=10000,
        help='class-balanced training subset (default 10000)',
    )
    parser.add_argument(
        '--epochs',
        type=int,
        default=3,
        help='epochs of each float training (default 3)',
    )
    parser.add_argument(
        '--qat-epochs',
        type=int,
        default=3,
        help='epochs of QAT fine-tuning (default 3)',
    )
    parser.add_argument(
        '--test-size',
        type=int,
        default=None,
        help='class-balanced test subset (default: all 10,000)',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=2,
        help='intra-op threads of every tool run (default 2); '
        'results are reproducible for a fixed value',
    )
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    return parser.parse_args()


def stage_dir(work_dir: str, name: str) -> str:
    """Folder of one stage, e.g. ``student__KD`` for ``'student + KD'``."""
    return osp.join(work_dir, name.replace(' ', '_').replace('+', ''))


def derived_config(
    path: str,
    config: str,
    epochs: int,
    train_size: int,
    test_size: Optional[int],
    extra: str = '',
) -> str:
    """Write a config that inherits ``config`` and sets the demo's sizes."""
    with open(path, 'w') as f:
        f.write(f"""_base_ = [{osp.join(REPO, config)!r}]
train_dataloader = dict(dataset=dict(subset_size={train_size}))
test_dataloader = dict(dataset=dict(subset_size={test_size}))
val_dataloader = dict(dataset=dict(subset_size=2000))
train_cfg = dict(by_epoch=True, max_epochs={epochs}, val_interval={epochs})
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0,
                        end={epochs}, eta_min=1e-4, convert_to_iter_based=True)]
randomness = dict(seed=0, deterministic=True)
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval={epochs}, save_best=None))
test_evaluator = [dict(type='Accuracy', topk=(1, )),
                  dict(type='ClsCalibrationMetric', num_bins=15)]
{extra}""")
    return path


class StageLine:
    """One terminal line per stage, rewritten in place with its progress."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.live = sys.stdout.isatty()
        self.width = 0

    def show(self, text: str, final: bool = False) -> None:
        line = f'{self.label} {text}'
        if self.live:
            sys.stdout.write('\r' + line.ljust(self.width))
            self.width = len(line)
            if final:
                sys.stdout.write('\n')
        elif final:
            sys.stdout.write(line + '\n')
        sys.stdout.flush()


def run(
    tool: str, args, log_file: str, line: StageLine, phase: str, threads: int
) -> float:
    """Run a tool with its output in ``log_file``; return the wall time (s)."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED='1',
    )
    start = time.time()
    with open(log_file, 'w') as log:
        log.write(
            '$ ' + ' '.join([osp.relpath(sys.executable, REPO), tool, *args]) + '\n'
        )
        proc = subprocess.Popen(
            [sys.executable, tool, *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for text in proc.stdout:
            log.write(text)
            log.flush()
            match = PROGRESS.search(text)
            if match:
                kind, epoch, done, total = match.groups()
                where = f' epoch {epoch}' if epoch else ''
                line.show(
                    f'{phase}: {kind}{where} [{done}/{total}] '
                    f'{time.time() - start:.0f} s'
                )
        returncode = proc.wait()
    if returncode != 0:
        line.show(f'{phase} FAILED', final=True)
        with open(log_file) as f:
            tail = f.readlines()[-25:]
        sys.exit(
            ''.join(tail) + f'\ndemo: {osp.basename(tool)} failed; the '
            f'full log is {log_file}'
        )
    return time.time() - start


def test_metrics(work_dir: str) -> dict:
    """Metrics of the newest ``tools/test.py`` run in ``work_dir``."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not logs:
        sys.exit(f'demo: no test results in {work_dir}')
    with open(logs[-1]) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def count_params(checkpoint: str) -> int:
    """Weights of the deployed model (no quantizer state, no teacher)."""
    state = safe_torch_load(checkpoint, map_location='cpu')['state_dict']
    return sum(
        v.numel()
        for k, v in state.items()
        if k.endswith(('.weight', '.bias'))
        and '_quantizer' not in k
        and not k.startswith(('teacher', 'adapters'))
    )


def main():
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    print(
        f'Fashion-MNIST demo: {len(STEPS)} stages, logs and checkpoints in '
        f'{osp.relpath(args.work_dir)}/',
        flush=True,
    )
    rows, ckpt, started = [], {}, time.time()
    for index, (name, config, what) in enumerate(STEPS, 1):
        work_dir = stage_dir(args.work_dir, name)
        os.makedirs(work_dir, exist_ok=True)
        epochs, extra = args.epochs, ''
        if name == 'student + KD':
            extra = f'model = dict(teacher=dict(checkpoint={ckpt["teacher"]!r}))'
        elif name == 'student W4A4':
            epochs = args.qat_epochs
            extra = f'load_from = {ckpt["student"]!r}'
        cfg = derived_config(
            work_dir + '.py', config, epochs, args.train_size, args.test_size, extra
        )
        line = StageLine(f'[{index}/{len(STEPS)}] {name:<20}')
        seconds = run(
            TRAIN,
            [cfg, '--work-dir', work_dir],
            osp.join(work_dir, 'train.log'),
            line,
            'train',
            args.threads,
        )
        ckpt[name] = osp.join(work_dir, f'epoch_{epochs}.pth')
        student_file = ckpt[name].replace('.pth', '_student.pth')
        deployed = student_file if osp.isfile(student_file) else ckpt[name]
        run(
            TEST,
            [cfg, ckpt[name], '--work-dir', work_dir],
            osp.join(work_dir, 'test.log'),
            line,
            'test',
            args.threads,
        )
        metrics = test_metrics(work_dir)
        ece = next(v for k, v in metrics.items() if k.endswith('/ece'))
        rows.append(
            (name, what, metrics['accuracy/top1'], ece, count_params(deployed), seconds)
        )
        line.show(
            f'top-1 {rows[-1][2]:6.2f} %  ECE {ece:5.2f} %  (train {seconds:.0f} s)',
            final=True,
        )

    table = [
        '| model | what | top-1 (%) | ECE (%) | params | train time (s) |',
        '|---|---|---|---|---|---|',
    ]
    table += [
        f'| {n} | {w} | {a:.2f} | {e:.2f} | {p:,} | {s:.0f} |'
        for n, w, a, e, p, s in rows
    ]
    test = (
        '10,000 images'
        if args.test_size is None
        else f'class-balanced subset of {args.test_size} images'
    )
    text = (
        f'Fashion-MNIST test set ({test}); training on a class-balanced '
        f'subset of {args.train_size} images, {args.epochs} epochs '
        f'(QAT: {args.qat_epochs}), {args.threads} threads, seed 0.\n\n'
        + '\n'.join(table)
        + '\n'
    )
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(text)
    print(
        f'\n{text}\nTotal {time.time() - started:.0f} s. Table: '
        f'{osp.relpath(osp.join(args.work_dir, "results.md"))}; full logs: '
        f'{osp.relpath(args.work_dir)}/<stage>/train.log, test.log'
    )


if __name__ == '__main__':
    main()
