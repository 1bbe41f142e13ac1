"""Converged Fashion-MNIST teacher and student: trained once, cached, reused.

Trains ``configs/baselines/mmpretrain/teacher_r18-w16_fmnist55k.py`` and
``student_r18-w8_fmnist55k.py`` with ``tools/train.py`` (the 55k train split,
top-1 on the 5k hold-out after every epoch), tests the last checkpoint on the
official 10k test split and records the validation curve of every run. The
student recipe with a calibration loss in place of CE (``student_rankmixup``,
``student_rankmixup_rawbn``, ``student_mixup``:
``configs/calibrate/mmpretrain/*_fmnist55k.py``) is trained
and cached the same way for ``benchmarks/calibration.py --converged``.

Seed 0 trains into the stock tool's default work dir ``work_dirs/<config
name>/``, so a config names the checkpoint as ``load_from`` or as a teacher
checkpoint (``work_dirs/student_r18-w8_fmnist55k/epoch_15.pth``); seed ``s > 0``
trains into ``work_dirs/<config name>_s<s>/``. A run whose last checkpoint and
``result.json`` are there is not trained again (a checkpoint without a result
is only tested), so benchmarks can call this first and reuse the cache.

Usage::

    python benchmarks/fmnist_converged.py --models teacher student --seeds 0 \\
        --out docs/distill/accuracy.md

Writes ``result.json`` into every run's work dir (test top-1, the validation
curve, the mean logged training loss of every epoch, wall time and the load
average before and after), and, with ``--out``, the table into the block
``<!-- fmnist_converged:begin/end -->`` of that page, all results into the
``fmnist_converged.json`` next to it and the curves into
``fmnist_converged.png`` next to it.
"""

import argparse
import glob
import itertools
import json
import math
import os
import os.path as osp
import signal
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from distill_fmnist_accuracy import device_name, test_accuracy  # noqa: E402
from doc_blocks import write_block  # noqa: E402

CONFIGS = dict(
    teacher='configs/baselines/mmpretrain/teacher_r18-w16_fmnist55k.py',
    student='configs/baselines/mmpretrain/student_r18-w8_fmnist55k.py',
    student_rankmixup='configs/calibrate/mmpretrain/'
    'rankmixup-mrl_resnet18-w8_fmnist55k.py',
    student_rankmixup_rawbn='configs/calibrate/mmpretrain/'
    'rankmixup-mrl-rawbn_resnet18-w8_fmnist55k.py',
    student_mixup='configs/calibrate/mmpretrain/mixup_resnet18-w8_fmnist55k.py',
    student_noaug='configs/calibrate/mmpretrain/ce_resnet18-w8_fmnist55k-noaug.py',
    student_rankmixup_rawbn_noaug='configs/calibrate/mmpretrain/'
    'rankmixup-mrl-rawbn_resnet18-w8_fmnist55k-noaug.py',
    student_rankmixup_noaug='configs/calibrate/mmpretrain/'
    'rankmixup-mrl_resnet18-w8_fmnist55k-noaug.py',
)
BLOCK = 'fmnist_converged'
POLL_S = 10  # seconds between looks at a training run's progress


def work_dir_of(model: str, seed: int, root: str = ROOT) -> str:
    """The cache dir of one run: the stock default work dir for seed 0.

    Args:
        model (str): A key of ``CONFIGS``.
        seed (int): The training seed.
        root (str): The repository root. Defaults to this checkout.

    Returns:
        str: ``<root>/work_dirs/<config name>[_s<seed>]``.
    """
    name = osp.splitext(osp.basename(CONFIGS[model]))[0]
    return osp.join(root, 'work_dirs', name + (f'_s{seed}' if seed else ''))


def max_epochs(model: str) -> int:
    """``train_cfg.max_epochs`` of the model's config."""
    from mmengine.config import Config

    return Config.fromfile(osp.join(ROOT, CONFIGS[model])).train_cfg.max_epochs


def _scalar_files(work_dir: str) -> List[str]:
    """``<timestamp>/vis_data/scalars.json`` of every run in ``work_dir``,
    oldest first (one per ``tools/train.py`` call: resumed chunks add one)."""
    return sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))


def read_curves(work_dir: str) -> Dict[str, List[list]]:
    """Validation top-1 and mean logged training loss per epoch of a run.

    Merges the ``scalars.json`` of every ``tools/train.py`` call of the work
    dir (a resumed chunk adds one); for an epoch recorded twice (a chunk
    stopped inside it, the next one trained it again) the later call wins.

    Args:
        work_dir (str): The ``--work-dir`` given to ``tools/train.py``.

    Returns:
        dict: ``val_top1`` and ``train_loss``, each a list of
        ``[epoch, value]`` in epoch order.

    Raises:
        FileNotFoundError: No ``scalars.json`` with a validation record.
    """
    val: Dict[int, float] = {}
    loss: Dict[int, float] = {}
    for path in _scalar_files(work_dir):
        with open(path) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        losses: Dict[int, List[float]] = {}
        for record in records:
            if 'loss' in record:
                losses.setdefault(record['epoch'], []).append(record['loss'])
            elif 'accuracy/top1' in record:
                val[record['step']] = record['accuracy/top1']
        loss.update({epoch: statistics.mean(v) for epoch, v in losses.items()})
    if not val:
        raise FileNotFoundError(
            f'No vis_data/scalars.json with a validation record under {work_dir}: '
            'did tools/train.py run with val_interval=1?'
        )
    return dict(
        val_top1=[[e, v] for e, v in sorted(val.items())],
        train_loss=[[e, v] for e, v in sorted(loss.items())],
    )


def validated_epochs(work_dir: str) -> int:
    """The last epoch whose validation is recorded (0 before the first)."""
    try:
        return read_curves(work_dir)['val_top1'][-1][0]
    except FileNotFoundError:
        return 0


def train_chunk(model: str, seed: int, work_dir: str, deadline: float) -> None:
    """Train with ``tools/train.py`` (resumed from the work dir's last
    checkpoint when there is one) until the run ends, or stop it right after
    the validation of an epoch when the next epoch would end after
    ``deadline``; append the chunk's wall time and load to ``chunks.json``.

    Args:
        model (str): A key of ``CONFIGS``.
        seed (int): The training seed (``randomness.seed``).
        work_dir (str): The run's work dir.
        deadline (float): ``time.time()`` to stop by (``inf``: no limit).
    """
    os.makedirs(work_dir, exist_ok=True)
    resume = osp.isfile(osp.join(work_dir, 'last_checkpoint'))
    cmd = [sys.executable, 'tools/train.py', CONFIGS[model], '--work-dir', work_dir]
    cmd += ['--resume'] * resume + ['--cfg-options', f'randomness.seed={seed}']
    first = done = validated_epochs(work_dir)
    before, start = os.getloadavg(), time.time()
    marks = [start]
    with open(osp.join(work_dir, 'train.log'), 'a') as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(POLL_S)
            if validated_epochs(work_dir) > done:
                done = validated_epochs(work_dir)
                marks.append(time.time())
            # stop at the deadline, or right after an epoch when the next one
            # (as long as the longest so far) would end after it
            longest = max((b - a for a, b in zip(marks, marks[1:])), default=0)
            if time.time() > deadline or (
                len(marks) > 1 and marks[-1] + longest > deadline
            ):
                proc.terminate()
                proc.wait()
    if proc.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f'{" ".join(cmd)} exited {proc.returncode}: see {log.name}')
    chunk = dict(
        epochs=[first, validated_epochs(work_dir)],
        seconds=round(time.time() - start, 1),
        load_before=[round(x, 2) for x in before],
        load_after=[round(x, 2) for x in os.getloadavg()],
        device=device_name(),
    )
    path = osp.join(work_dir, 'chunks.json')
    chunks = json.load(open(path)) if osp.isfile(path) else []
    with open(path, 'w') as handle:
        json.dump(chunks + [chunk], handle, indent=1)


def run(model: str, seed: int, root: str = ROOT, deadline: float = math.inf):
    """Train (unless cached) and test one model; write its ``result.json``.

    Args:
        model (str): A key of ``CONFIGS``.
        seed (int): The training seed (``randomness.seed``).
        root (str): The repository root. Defaults to this checkout.
        deadline (float): ``time.time()`` by which training stops at an epoch
            end (the next call resumes it). Defaults to no limit.

    Returns:
        dict | None: The run's result (also in ``<work dir>/result.json``), or
        None when training stopped before the last epoch.
    """
    work_dir = work_dir_of(model, seed, root)
    epochs = max_epochs(model)
    checkpoint = osp.join(work_dir, f'epoch_{epochs}.pth')
    result_path = osp.join(work_dir, 'result.json')
    if osp.isfile(checkpoint) and osp.isfile(result_path):
        print(f'{model} seed {seed}: cached in {work_dir}', flush=True)
        with open(result_path) as handle:
            return json.load(handle)
    if not osp.isfile(checkpoint):
        train_chunk(model, seed, work_dir, deadline)
        if not osp.isfile(checkpoint):
            print(
                f'{model} seed {seed}: stopped after epoch '
                f'{validated_epochs(work_dir)} of {epochs} (time limit); the same '
                'command resumes it',
                flush=True,
            )
            return None
    result = dict(model=model, seed=seed, config=CONFIGS[model])
    chunks_path = osp.join(work_dir, 'chunks.json')
    if osp.isfile(chunks_path):
        with open(chunks_path) as handle:
            result['chunks'] = json.load(handle)
    result.update(
        checkpoint=osp.relpath(checkpoint, root),
        top1=round(test_accuracy(CONFIGS[model], checkpoint), 2),
        **read_curves(work_dir),
    )
    with open(result_path, 'w') as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps({k: result[k] for k in ('model', 'seed', 'top1')}), flush=True)
    return result


def chunk_devices(chunks: List[dict]) -> str:
    """The devices the training chunks of a run used, comma-separated
    (chunks recorded without one trained on the CPU).

    Args:
        chunks (list[dict]): The run's ``chunks.json`` records.

    Returns:
        str: e.g. ``'CPU, NVIDIA H200'``; empty without chunks.
    """
    return ', '.join(sorted({chunk.get('device', 'CPU') for chunk in chunks}))


def describe_training(result: dict) -> str:
    """Wall time of the training chunks of a run, the epochs they trained
    (a run resumed from a checkpoint trained elsewhere starts after epoch 1)
    and the load around each.

    Args:
        result (dict): A result of :func:`run`.

    Returns:
        str: e.g. ``'850 s in 1 chunk(s) on CPU, epochs 7-15 (load ...)'``.
    """
    chunks = result.get('chunks')
    if not chunks:
        return 'not timed (trained outside this script)'
    loads = '; '.join(
        '/'.join(f'{x:.2f}' for x in chunk['load_before'])
        + ' -> '
        + '/'.join(f'{x:.2f}' for x in chunk['load_after'])
        for chunk in chunks
    )
    total = sum(chunk['seconds'] for chunk in chunks)
    devices = chunk_devices(chunks)
    spans = [chunk['epochs'] for chunk in chunks if 'epochs' in chunk]
    epochs = f', epochs {spans[0][0] + 1}-{spans[-1][1]}' if spans else ''
    return (
        f'{total:.0f} s in {len(chunks)} chunk(s) on {devices}{epochs} (load {loads})'
    )


def table(results: List[dict]) -> str:
    """Markdown: test top-1 over the seeds, the end of the validation curve.

    Args:
        results (list[dict]): Results of :func:`run`.

    Returns:
        str: One row per model, then one row per run.
    """
    rows = [
        '| model | config | epochs | seeds | test top-1 (%) | best val top-1 '
        '(%, epoch) | val top-1 of the last 3 epochs (%) |',
        '|---|---|---|---|---|---|---|',
    ]
    for model in CONFIGS:
        runs = sorted(
            (r for r in results if r['model'] == model), key=lambda r: r['seed']
        )
        if not runs:
            continue
        top1 = [r['top1'] for r in runs]
        spread = f' ± {statistics.pstdev(top1):.2f}' if len(top1) > 1 else ''
        best = max(runs[0]['val_top1'], key=lambda point: point[1])
        last3 = ', '.join(f'{v:.2f}' for _, v in runs[0]['val_top1'][-3:])
        rows.append(
            f'| {model} | `{runs[0]["config"]}` | {runs[0]["val_top1"][-1][0]} | '
            f'{", ".join(str(r["seed"]) for r in runs)} | '
            f'{statistics.mean(top1):.2f}{spread} '
            f'({", ".join(f"{t:.2f}" for t in top1)}) | '
            f'{best[1]:.2f} ({best[0]}) | {last3} (seed {runs[0]["seed"]}) |'
        )
    rows += [
        '',
        '| run | checkpoint | test top-1 (%) | train time |',
        '|---|---|---|---|',
    ]
    for r in sorted(results, key=lambda r: (r['model'], r['seed'])):
        rows.append(
            f'| {r["model"]}, seed {r["seed"]} | `{r["checkpoint"]}` | '
            f'{r["top1"]:.2f} | {describe_training(r)} |'
        )
    return '\n'.join(rows)


def plot(results: List[dict], path: str) -> None:
    """Validation top-1 and training loss per epoch of every run (png)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for r in sorted(results, key=lambda r: (r['model'], r['seed'])):
        label = f'{r["model"]}, seed {r["seed"]}'
        acc.plot(*zip(*r['val_top1']), marker='.', label=label)
        loss.plot(*zip(*r['train_loss']), marker='.', label=label)
    acc.set(xlabel='epoch', ylabel='top-1 on the 5k hold-out (%)', ylim=(80, 100))
    loss.set(xlabel='epoch', ylabel='training loss (mean of logged values)')
    for axes in (acc, loss):
        axes.grid(alpha=0.3)
        axes.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def record(results: List[dict], out: str, command: str) -> None:
    """Merge ``results`` into the json next to ``out``; write table and plot."""
    stem = osp.join(osp.dirname(out), BLOCK)
    known: Dict[tuple, dict] = {}
    if osp.isfile(stem + '.json'):
        with open(stem + '.json') as handle:
            known = {(r['model'], r['seed']): r for r in json.load(handle)}
    known.update({(r['model'], r['seed']): r for r in results})
    merged = sorted(known.values(), key=lambda r: (r['model'], r['seed']))
    with open(stem + '.json', 'w') as handle:
        json.dump(merged, handle, indent=1)
    plot(merged, stem + '.png')
    body = (
        f'Command: `{command}` (each training through `tools/train.py` in its '
        'own process; the test top-1 is the last checkpoint on the official 10k '
        'test split). Curves: '
        f'[{BLOCK}.png]({BLOCK}.png), raw numbers: [{BLOCK}.json]({BLOCK}.json).'
        '\n\n' + table(merged)
    )
    write_block(out, BLOCK, body)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--models', nargs='+', default=list(CONFIGS), choices=list(CONFIGS)
    )
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument(
        '--max-minutes',
        type=float,
        default=math.inf,
        help='stop training at an epoch end within this many minutes; the same '
        'command resumes it (default: no limit)',
    )
    parser.add_argument('--out', help='markdown page for the table (and json, png)')
    args = parser.parse_args(argv)
    deadline = time.time() + 60 * args.max_minutes
    results = []
    for seed, model in itertools.product(args.seeds, args.models):
        result = run(model, seed, deadline=deadline)
        if result is None:  # stopped by the time limit: leave the rest
            break
        results.append(result)
    if args.out and results:
        command = (
            'python benchmarks/fmnist_converged.py --models '
            + ' '.join(args.models)
            + ' --seeds '
            + ' '.join(map(str, args.seeds))
            + f' --out {args.out}'
        )
        record(results, args.out, command)
    if len(results) < len(args.seeds) * len(args.models):
        raise SystemExit(
            f'{len(results)} of {len(args.seeds) * len(args.models)} runs '
            'finished: run the same command again to resume'
        )


if __name__ == '__main__':
    main()
