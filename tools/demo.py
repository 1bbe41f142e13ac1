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

Converged checkpoints: when ``benchmarks/fmnist_converged.py`` has trained the
converged teacher and student (seed 0; their ``result.json`` in
``work_dirs/teacher_r18-w16_fmnist55k/`` and ``work_dirs/student_r18-w8_fmnist55k/``),
the demo tests those two instead of training short versions, distills from the
converged teacher, quantizes the converged student, and trains a CE student at the
demo's budget as the reference of the KD and RankMixup rows (which train at that
budget). Every row says which kind it is; ``--converged never`` forces the short
version.

Reproducible: every run is seeded (``randomness=dict(seed=0,
deterministic=True)``) and every tool runs with ``--threads`` intra-op threads
(default 2, whatever the machine has), so two runs print the same numbers.

Usage:
    python tools/demo.py [--train-size 10000] [--epochs 3] [--qat-epochs 3]
                         [--test-size N] [--threads 2] [--work-dir work_dirs/demo]
                         [--converged auto|never]
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
from typing import List, NamedTuple, Optional

from mmcompress.utils.safe_load import safe_torch_load

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')

TEACHER = 'configs/baselines/mmpretrain/fmnist_teacher.py'
STUDENT = 'configs/baselines/mmpretrain/fmnist_student.py'
KD = 'configs/distill/mmpretrain/kd_fmnist.py'
W4A4 = 'configs/quant/mmpretrain/lsq_w4a4_fmnist.py'
RANKMIXUP = (
    'configs/calibrate/mmpretrain/rankmixup-mndcg-rawbn-fmnistsgd_resnet18-w8_fmnist.py'
)
# the converged runs of benchmarks/fmnist_converged.py (seed 0)
CONVERGED = dict(
    teacher='work_dirs/teacher_r18-w16_fmnist55k',
    student='work_dirs/student_r18-w8_fmnist55k',
)


class Stage(NamedTuple):
    """One row of the demo.

    Args:
        name (str): The row's name (also its work-dir name).
        config (str): The config, relative to the repository root.
        what (str): What the row shows.
        checkpoint (str, optional): A finished checkpoint: the stage is only
            tested. Defaults to None (trained, then tested).
        teacher (str, optional): Name of the stage whose checkpoint is the
            distillation teacher. Defaults to None.
        init (str, optional): Name of the stage whose checkpoint is loaded
            before training (``load_from``). Defaults to None.
        qat (bool): Train for ``--qat-epochs`` instead of ``--epochs``.
    """

    name: str
    config: str
    what: str
    checkpoint: Optional[str] = None
    teacher: Optional[str] = None
    init: Optional[str] = None
    qat: bool = False


def converged_checkpoints(root: str = REPO) -> Optional[dict]:
    """The converged seed-0 teacher and student, if both have finished.

    Args:
        root (str): The repository root. Defaults to this checkout.

    Returns:
        dict | None: ``{'teacher': (config, checkpoint), 'student': ...}`` read
        from each run's ``result.json`` (written by
        ``benchmarks/fmnist_converged.py`` once the run is trained and tested),
        or None when either is missing.
    """
    found = {}
    for model, work_dir in CONVERGED.items():
        path = osp.join(root, work_dir, 'result.json')
        if not osp.isfile(path):
            return None
        with open(path) as handle:
            result = json.load(handle)
        if not osp.isfile(osp.join(root, result['checkpoint'])):
            return None
        found[model] = (result['config'], result['checkpoint'])
    return found


def plan(converged: Optional[dict]) -> List[Stage]:
    """The demo's stages, with or without the converged checkpoints.

    Args:
        converged (dict | None): The result of :func:`converged_checkpoints`.

    Returns:
        list[Stage]: The stages in running order.
    """
    kd = 'vanilla KD from the teacher (tau 4)'
    rankmixup = 'M-NDCG calibration training (official setting, raw-batch BN)'
    if converged is None:
        return [
            Stage('teacher', TEACHER, 'ResNet-18 w16, CE'),
            Stage('student', STUDENT, 'ResNet-18 w8 (3 stages), CE'),
            Stage('student + KD', KD, kd, teacher='teacher'),
            Stage(
                'student W4A4',
                W4A4,
                'LSQ QAT from the CE student',
                init='student',
                qat=True,
            ),
            Stage('student + RankMixup', RANKMIXUP, rankmixup),
        ]
    converged_what = 'converged checkpoint (55k images, 15 epochs; not retrained)'
    return [
        Stage(
            'teacher',
            converged['teacher'][0],
            'ResNet-18 w16, CE, ' + converged_what,
            checkpoint=converged['teacher'][1],
        ),
        Stage(
            'student',
            converged['student'][0],
            'ResNet-18 w8 (3 stages), CE, ' + converged_what,
            checkpoint=converged['student'][1],
        ),
        Stage(
            'student, demo budget',
            STUDENT,
            'CE at the demo budget: the reference of the KD and RankMixup rows',
        ),
        Stage(
            'student + KD',
            KD,
            kd + ' (converged teacher, demo budget)',
            teacher='teacher',
        ),
        Stage(
            'student W4A4',
            W4A4,
            'LSQ QAT from the converged CE student',
            init='student',
            qat=True,
        ),
        Stage('student + RankMixup', RANKMIXUP, rankmixup + ' (demo budget)'),
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
    parser.add_argument(
        '--converged',
        choices=('auto', 'never'),
        default='auto',
        help='auto (default): test the converged teacher and student of '
        'benchmarks/fmnist_converged.py when both exist instead of training '
        'short versions; never: always train the short versions',
    )
    return parser.parse_args()


def stage_dir(work_dir: str, name: str) -> str:
    """Folder of one stage, e.g. ``student__KD`` for ``'student + KD'``."""
    return osp.join(work_dir, name.replace(' ', '_').replace('+', '').replace(',', ''))


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
    converged = None if args.converged == 'never' else converged_checkpoints()
    stages = plan(converged)
    print(
        f'Fashion-MNIST demo: {len(stages)} stages, logs and checkpoints in '
        f'{osp.relpath(args.work_dir)}/',
        flush=True,
    )
    if converged is not None:
        print(
            'Using the converged teacher and student of '
            'benchmarks/fmnist_converged.py: '
            + ', '.join(v[1] for v in converged.values())
            + ' (--converged never trains short versions instead)',
            flush=True,
        )
    rows, ckpt, started = [], {}, time.time()
    for index, stage in enumerate(stages, 1):
        work_dir = stage_dir(args.work_dir, stage.name)
        os.makedirs(work_dir, exist_ok=True)
        epochs = args.qat_epochs if stage.qat else args.epochs
        extra = ''
        if stage.teacher:
            extra = f'model = dict(teacher=dict(checkpoint={ckpt[stage.teacher]!r}))'
        elif stage.init:
            extra = f'load_from = {ckpt[stage.init]!r}'
        cfg = derived_config(
            work_dir + '.py',
            stage.config,
            epochs,
            args.train_size,
            args.test_size,
            extra,
        )
        line = StageLine(f'[{index}/{len(stages)}] {stage.name:<20}')
        if stage.checkpoint:
            seconds = None
            ckpt[stage.name] = osp.join(REPO, stage.checkpoint)
        else:
            seconds = run(
                TRAIN,
                [cfg, '--work-dir', work_dir],
                osp.join(work_dir, 'train.log'),
                line,
                'train',
                args.threads,
            )
            ckpt[stage.name] = osp.join(work_dir, f'epoch_{epochs}.pth')
        student_file = ckpt[stage.name].replace('.pth', '_student.pth')
        deployed = student_file if osp.isfile(student_file) else ckpt[stage.name]
        run(
            TEST,
            [cfg, ckpt[stage.name], '--work-dir', work_dir],
            osp.join(work_dir, 'test.log'),
            line,
            'test',
            args.threads,
        )
        metrics = test_metrics(work_dir)
        ece = next(v for k, v in metrics.items() if k.endswith('/ece'))
        rows.append(
            (
                stage.name,
                stage.what,
                metrics['accuracy/top1'],
                ece,
                count_params(deployed),
                'cached' if seconds is None else f'{seconds:.0f}',
            )
        )
        trained = 'not retrained' if seconds is None else f'train {seconds:.0f} s'
        line.show(
            f'top-1 {rows[-1][2]:6.2f} %  ECE {ece:5.2f} %  ({trained})',
            final=True,
        )

    table = [
        '| model | what | top-1 (%) | ECE (%) | params | train time (s) |',
        '|---|---|---|---|---|---|',
    ]
    table += [
        f'| {n} | {w} | {a:.2f} | {e:.2f} | {p:,} | {s} |' for n, w, a, e, p, s in rows
    ]
    test = (
        '10,000 images'
        if args.test_size is None
        else f'class-balanced subset of {args.test_size} images'
    )
    trained = 'trained rows' if converged else 'training'
    text = (
        f'Fashion-MNIST test set ({test}); {trained} on a class-balanced '
        f'subset of {args.train_size} images, {args.epochs} epochs '
        f'(QAT: {args.qat_epochs}), {args.threads} threads, seed 0'
        + (
            '; teacher and student: the converged checkpoints of '
            'benchmarks/fmnist_converged.py (55k images, 15 epochs, seed 0)'
            if converged
            else ''
        )
        + '.\n\n'
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
