"""Fashion-MNIST accuracy of distilled students vs the CE-only student.

Trains the teacher once (``configs/baselines/mmpretrain/fmnist_teacher.py``),
then, for every seed, the CE student (``fmnist_student.py``) and one student
per distillation config of ``configs/distill/mmpretrain/``, each with
``tools/train.py`` in its own process. Every student is evaluated on the
official 10k test split from its **plain student checkpoint** with the
baseline student config (the file stock ``tools/test.py`` would use), so the
table also checks that the ``*_student.pth`` files work.

Usage::

    python benchmarks/distill_fmnist_accuracy.py --seeds 0 1 2 \
        --out docs/distill/accuracy.md
    # quick smoke run: --epochs 1 --subset 2000 --seeds 0

At convergence (``--converged``) the teacher is the converged teacher of
``benchmarks/fmnist_converged.py`` (seed 0) and the CE student of seed ``s``
its converged student of seed ``s``, both reused from their cache in the work
dir or trained there first; the students train on the whole 55k split for the
converged configs' epochs::

    python benchmarks/distill_fmnist_accuracy.py --converged --seeds 0 1 2 \
        --jobs 8 --out docs/distill/converged.md

``--jobs`` trains that many runs at once, each in its own process (on a GPU
they share the device) with ``OMP_NUM_THREADS`` = cores / jobs unless it is
set; the teacher-free runs start while the teacher trains.

Raw per-seed numbers (top-1, wall time and device of every run) go to the
``.json`` next to ``--out``, rewritten after every run together with the table
(the block between ``<!-- distill_fmnist_accuracy:begin/end -->`` of
``--out``; the text around it is kept); ``--resume`` reuses the teacher and the
runs already in that file.
"""

import argparse
import json
import math
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402

TEACHER_CFG = 'configs/baselines/mmpretrain/fmnist_teacher.py'
STUDENT_CFG = 'configs/baselines/mmpretrain/fmnist_student.py'
METHODS = {
    'CE student': STUDENT_CFG,
    'KD': 'configs/distill/mmpretrain/kd_fmnist.py',
    # issue 4 (9d): the same KD with the teacher's forward in bf16 autocast
    'KD (bf16 teacher)': 'configs/distill/mmpretrain/kd_fmnist.py',
    'Decoupled KD': 'configs/distill/mmpretrain/dkd_fmnist.py',
    # the official ImageNet setting (beta=0.5, tau=1)
    'Decoupled KD (beta 0.5, tau 1)': (
        'configs/distill/mmpretrain/dkd-beta0.5-tau1_fmnist.py'
    ),
    'DIST': 'configs/distill/mmpretrain/dist_fmnist.py',
    'FitNets': 'configs/distill/mmpretrain/fitnets_fmnist.py',
    'ICKD (+KD)': 'configs/distill/mmpretrain/ickd_fmnist.py',
    'FFL': 'configs/distill/mmpretrain/ffl_fmnist.py',
}
# Methods trained without the teacher; FFL (online mutual distillation) is
# tested with its own config: one branch (the student's architecture) and
# the fused 2-branch prediction.
TEACHER_FREE = ('CE student', 'FFL')
FFL_RAMPUP_FRACTION = 80 / 300  # official: 80-epoch ramp-up of 300 epochs
TRAIN_SIZE = 55000  # the 'train' split: 60k minus the 5k hold-out
BATCH_SIZE = 128  # train_dataloader.batch_size of the base dataset config


def _options(args, seed, epochs):
    # The hold-out validation only picks a "best" checkpoint, which this
    # benchmark does not use (it tests the last one): skip it to save time.
    # The cosine phase (param_scheduler[1]) of fmnist_sgd.py ends at its own
    # max_epochs (8): end it with the shortened/lengthened training too.
    opts = [
        f'randomness.seed={seed}',
        f'train_cfg.max_epochs={epochs}',
        f'param_scheduler.1.end={epochs}',
        f'train_cfg.val_interval={epochs + 1}',
    ]
    if args.subset:
        opts.append(f'train_dataloader.dataset.subset_size={args.subset}')
    return opts


def _method_options(method, args):
    """Options that keep a config's recipe on a training subset (and select
    the reduced-precision teacher)."""
    if method == 'KD (bf16 teacher)':
        return ['model.teacher.precision=bf16']
    if method == 'FFL':
        rampup = max(1, round(args.epochs * FFL_RAMPUP_FRACTION))
        return [f'model.rampup_length={rampup}']
    if not method.startswith('Decoupled KD'):
        return []
    # dkd_fmnist.py warms DKD up over one epoch of the full 55k split (430
    # iterations); keep it one epoch of the subset actually trained on.
    epoch_iters = math.ceil((args.subset or TRAIN_SIZE) / BATCH_SIZE)
    return [f'model.distill.dkd.schedule.warmup_iters={epoch_iters}']


def train(config, work_dir, options):
    """Train ``config`` with tools/train.py; return the last checkpoint."""
    cmd = [
        sys.executable,
        'tools/train.py',
        config,
        '--work-dir',
        work_dir,
        '--cfg-options',
    ] + options
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def device_name():
    """The device the trainings of this process tree use: mmengine trains on
    the first GPU when there is one.

    Returns:
        str: The GPU's name, or ``'CPU'``.
    """
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'


def teacher_run(args):
    """Train (or, with ``--converged``, reuse) and test the table's teacher.

    Args:
        args (Namespace): The command line.

    Returns:
        dict: The run record (``method='teacher'``).
    """
    if args.converged:
        return _converged_run('teacher', 'teacher', 0)
    start = time.time()
    checkpoint = train(
        TEACHER_CFG,
        os.path.join(ROOT, args.work_dir, 'teacher'),
        _options(args, 0, args.teacher_epochs or args.epochs),
    )
    return dict(
        method='teacher',
        seed=0,
        checkpoint=checkpoint,
        train_s=round(time.time() - start, 1),
        top1=test_accuracy(TEACHER_CFG, checkpoint),
        device=device_name(),
    )


def _converged_run(model, method, seed):
    """The run record of a converged model of fmnist_converged.py (reused
    from its cache, or trained and tested there first).

    Args:
        model (str): ``'teacher'`` or ``'student'``.
        method (str): The table row it fills.
        seed (int): The training seed.

    Returns:
        dict: The run record.
    """
    import fmnist_converged

    result = fmnist_converged.run(model, seed)
    chunks = result.get('chunks', [])
    return dict(
        method=method,
        seed=seed,
        checkpoint=os.path.join(ROOT, result['checkpoint']),
        train_s=sum(c['seconds'] for c in chunks),
        top1=result['top1'],
        device=fmnist_converged.chunk_devices(chunks) or 'CPU',
    )


def student_run(method, seed, args, teacher_ckpt):
    """Train and test one student of the table.

    Args:
        method (str): A key of ``METHODS``.
        seed (int): The training seed.
        args (Namespace): The command line.
        teacher_ckpt (str | None): The teacher checkpoint (None for the
            teacher-free methods).

    Returns:
        dict: The run record.
    """
    if args.converged and method == 'CE student':
        return _converged_run('student', method, seed)
    config = METHODS[method]
    slug = re.sub(r'\W+', '_', method).strip('_')
    work_dir = os.path.join(ROOT, args.work_dir, f'{slug}_s{seed}')
    options = _options(args, seed, args.epochs) + _method_options(method, args)
    if method not in TEACHER_FREE:
        options.append(f'model.teacher.checkpoint={teacher_ckpt}')
    start = time.time()
    last = train(config, work_dir, options)
    train_s = round(time.time() - start, 1)
    if method not in TEACHER_FREE:
        last = last[: -len('.pth')] + '_student.pth'
    run = dict(
        method=method,
        seed=seed,
        checkpoint=last,
        train_s=train_s,
        device=device_name(),
    )
    if method == 'FFL':
        run['top1'] = test_accuracy(config, last, {'model.predict_from': 0})
        run['top1_fused'] = test_accuracy(config, last)
    else:
        run['top1'] = test_accuracy(STUDENT_CFG, last)
    return run


def test_accuracy(config, checkpoint, options=None):
    """Top-1 (%) on the test split of ``checkpoint`` loaded into ``config``
    (updated with the ``options`` dict)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmcompress  # noqa: F401

    cfg = Config.fromfile(os.path.join(ROOT, config))
    cfg.merge_from_dict(options or {})
    cfg.work_dir = os.path.join(os.path.dirname(checkpoint), 'test')
    cfg.load_from = checkpoint
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    metrics = Runner.from_cfg(cfg).test()
    return metrics['accuracy/top1']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument(
        '--epochs',
        type=int,
        help='epochs of the students (default: 8; with --converged the '
        "converged configs' max_epochs, which it must equal)",
    )
    parser.add_argument(
        '--teacher-epochs', type=int, help='epochs of the teacher (default: --epochs)'
    )
    parser.add_argument(
        '--subset',
        type=int,
        default=0,
        help='class-balanced training subset (0: all 55k)',
    )
    parser.add_argument(
        '--converged',
        action='store_true',
        help='teacher and CE students: the converged models of '
        'benchmarks/fmnist_converged.py (reused from its cache, or trained)',
    )
    parser.add_argument(
        '--methods', nargs='+', default=list(METHODS), choices=list(METHODS)
    )
    parser.add_argument(
        '--jobs', type=int, default=1, help='runs trained at once (default: 1)'
    )
    parser.add_argument('--work-dir', default='work_dirs/bench_fmnist_kd')
    parser.add_argument('--out', help='markdown file for the table')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='reuse the teacher and the finished runs '
        'recorded in the json next to --out',
    )
    args = parser.parse_args()
    if args.converged:
        import fmnist_converged

        epochs = fmnist_converged.max_epochs('student')
        if args.subset or args.teacher_epochs or args.epochs not in (None, epochs):
            parser.error(
                f'--converged trains the students on all 55k images for the '
                f"converged configs' {epochs} epochs; got --subset {args.subset}, "
                f'--teacher-epochs {args.teacher_epochs}, --epochs {args.epochs}'
            )
        args.epochs = epochs
    args.epochs = args.epochs or 8
    if args.jobs < 1:
        parser.error(f'--jobs must be at least 1, got {args.jobs}')
    # each run would otherwise start one intra-op thread per core: with
    # several runs the machine is oversubscribed many times over
    os.environ.setdefault('OMP_NUM_THREADS', str(max(1, os.cpu_count() // args.jobs)))
    raw_path = os.path.splitext(args.out)[0] + '.json' if args.out else None

    runs = []
    if args.resume and raw_path and os.path.exists(raw_path):
        with open(raw_path) as f:
            runs = json.load(f)['runs']
    done = {(run['method'], run['seed']) for run in runs}
    teacher_ckpt = next(
        (run['checkpoint'] for run in runs if run['method'] == 'teacher'), None
    )
    todo = [
        (method, seed)
        for method in args.methods
        for seed in args.seeds
        if (method, seed) not in done
    ]
    # spawn: every run's test builds a fresh mmengine Runner in a fresh process
    with ProcessPoolExecutor(
        args.jobs,
        mp_context=multiprocessing.get_context('spawn'),
        max_tasks_per_child=1,
    ) as pool:
        pending = {}
        if teacher_ckpt is None:
            pending[pool.submit(teacher_run, args)] = None
        while todo or pending:
            for key in [k for k in todo if teacher_ckpt or k[0] in TEACHER_FREE]:
                todo.remove(key)
                future = pool.submit(student_run, *key, args, teacher_ckpt)
                pending[future] = key
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                del pending[future]
                run = future.result()
                if run['method'] == 'teacher':
                    teacher_ckpt = run['checkpoint']
                runs.append(run)
                print(json.dumps(run), flush=True)
                _save(runs, raw_path, args)
    _save(runs, raw_path, args)


def _save(runs, raw_path, args):
    """Write the raw runs (json) and the table after every finished run."""
    if not args.out:
        return
    with open(raw_path, 'w') as f:
        json.dump(
            dict(
                subset=args.subset,
                epochs=args.epochs,
                teacher_epochs=args.teacher_epochs or args.epochs,
                converged=args.converged,
                jobs=args.jobs,
                runs=runs,
            ),
            f,
            indent=1,
        )
    results = {}
    order = ['teacher'] + list(METHODS)
    for run in sorted(runs, key=lambda r: (order.index(r['method']), r['seed'])):
        if run['method'] == 'FFL':
            results.setdefault('FFL (branch 0)', []).append(run)
            results.setdefault('FFL (fused 2 branches)', []).append(
                dict(run, top1=run['top1_fused'])
            )
        else:
            results.setdefault(run['method'], []).append(run)
    write_table(results, args)


def write_table(results, args):
    """Markdown table: mean +- std over seeds, and the gain over CE (of the
    means over the same seeds, and seed by seed).

    The command it states covers the table's own methods and seeds (the union
    over every run recorded, so a table grown with ``--resume`` is named
    whole); a method with fewer seeds than that shows it in the seeds column.
    """
    ce = {run['seed']: run['top1'] for run in results.get('CE student', [])}
    recipe = (
        ' --converged'
        if args.converged
        else f' --epochs {args.epochs}'
        + (f' --teacher-epochs {args.teacher_epochs}' if args.teacher_epochs else '')
        + (f' --subset {args.subset}' if args.subset else '')
    )
    methods = [
        method
        for method in METHODS
        if any(run['method'] == method for runs in results.values() for run in runs)
    ]
    seeds = sorted(
        {
            run['seed']
            for name, runs in results.items()
            if name != 'teacher'
            for run in runs
        }
    )
    cmd = (
        'python benchmarks/distill_fmnist_accuracy.py --seeds '
        + ' '.join(map(str, seeds or args.seeds))
        + recipe
        + (
            ''
            if methods == list(METHODS)
            else ' --methods ' + ' '.join(f"'{m}'" for m in methods)
        )
        + (f' --jobs {args.jobs}' if args.jobs > 1 else '')
        + f' --out {args.out}'
    )
    if args.converged:
        recipe_text = (
            'The teacher is the converged teacher of `benchmarks/fmnist_converged.py` '
            '(`teacher_r18-w16_fmnist55k.py`, seed 0), the CE student its converged '
            'student of the same seed (`student_r18-w8_fmnist55k.py`); the '
            f'distilled students train on the 55k train split for {args.epochs} epochs '
            'with the same schedule (SGD, one warm-up epoch, cosine to 1e-4)'
        )
    else:
        training_set = (
            f'class-balanced {args.subset}-image subset of the 55k train split'
            if args.subset
            else 'the 55k train split'
        )
        recipe_text = (
            f'Training set: {training_set}; students {args.epochs} epochs, '
            f'teacher {args.teacher_epochs or args.epochs} epochs (trained once, '
            'seed 0, shared by all students), SGD + cosine'
        )
    lines = [
        'Teacher: CIFAR-style ResNet-18, widths 16-128 (0.69 M params); '
        'student: 3-stage ResNet-18, widths 8-32 (0.045 M params). '
        f'{recipe_text}; test top-1 (%) of the last checkpoint on the official '
        '10k test split, evaluated from the plain `*_student.pth` files with '
        'the baseline student config. "vs CE student": the mean of the '
        "per-seed gains over the CE student of the same seed (the row's seeds). "
        'Wall time: '
        + (f'{args.jobs} runs at once' if args.jobs > 1 else 'one run at a time')
        + ', on the device of the last column.',
        '',
        f'Command: `{cmd}`',
        '',
        '| model | top-1 (mean ± std) | vs CE student | vs CE student, per seed '
        '| seeds | per-seed top-1 | train wall time / run (s) | device |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for method, method_runs in results.items():
        accs = [run['top1'] for run in method_runs]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        # gains pair each run with the CE student of its seed
        gains = [
            run['top1'] - ce[run['seed']] for run in method_runs if run['seed'] in ce
        ]
        baseline = method in ('teacher', 'CE student') or not gains
        gain = '' if baseline else f'{statistics.mean(gains):+.2f}'
        per_seed_gain = '' if baseline else ', '.join(f'{g:+.2f}' for g in gains)
        seeds = ', '.join(str(run['seed']) for run in method_runs)
        per_seed = ', '.join(f'{acc:.2f}' for acc in accs)
        wall = statistics.mean(run['train_s'] for run in method_runs)
        devices = ', '.join(
            sorted({run.get('device', 'not recorded') for run in method_runs})
        )
        lines.append(
            f'| {method} | {mean:.2f} ± {std:.2f} | {gain} | {per_seed_gain} | '
            f'{seeds} | {per_seed} | {wall:.0f} | {devices} |'
        )
    write_block(args.out, 'distill_fmnist_accuracy', '\n'.join(lines))


if __name__ == '__main__':
    main()
