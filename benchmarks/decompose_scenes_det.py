"""A scenes detector's backbone at -50 % FLOPs: filter-group decomposition vs
channel SVD vs Tucker-2, KD fine-tune, mAP drop.

Steps:

1. the trained detector: ``configs/baselines/mmdet/retinanet_r18-w16_scenes.py``
   at ``work_dirs/retinanet_r18-w16_scenes/iter_1600.pth`` (seed 0; trained
   with the stock mmdet ``tools/train.py`` when missing), its val mAP;
2. per method, ``tools/decompose.py`` with ``--include 'backbone.*'
   --flops-of selected --flops-ratio 0.5`` (the backbone keeps half of its
   FLOPs, neck and head keep theirs; plans from the trained weights, once),
   the mAP right after decomposition;
3. per method and seed, the KD fine-tune
   ``configs/decompose/mmdet/pkd_decomposed_retinanet_r18-w16_scenes.py``
   (teacher: the trained detector; student: the decomposed config of step 2;
   ``load_from`` the trained checkpoint) with the stock mmdet
   ``tools/train.py``; the arm ``none`` runs the same fine-tune on the
   undecomposed detector: the control that separates the decomposition's
   cost from what the extra iterations give.

Every run leaves ``benchmark.json`` in its work dir (reused when present:
an interrupted benchmark resumes; separate calls may run seeds or methods in
parallel); the block ``decompose_scenes_det_<iters>it`` of ``--out``
summarises every run of that fine-tune length found (mean +- std over seeds).

Usage::

    python tools/generate_scenes.py --task det --split bench
    OMP_NUM_THREADS=1 python benchmarks/decompose_scenes_det.py --seeds 0 1 2 \\
        --out docs/decompose.md
"""

import argparse
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from detection_kd_scenes import (  # noqa: E402
    DEFAULT_DATA_ROOT,
    METRIC,
    write_run_config,
)
from doc_blocks import write_block  # noqa: E402
from scenes_baselines import final_metrics, train  # noqa: E402

CONFIG = 'configs/baselines/mmdet/retinanet_r18-w16_scenes.py'
CHECKPOINT = 'work_dirs/retinanet_r18-w16_scenes/iter_1600.pth'
KD_CONFIG = 'configs/decompose/mmdet/pkd_decomposed_retinanet_r18-w16_scenes.py'
ARMS = ('none', 'group', 'svd', 'tucker2')
NAMES = dict(
    none='undecomposed (control)',
    group='filter-group',
    svd='channel SVD',
    tucker2='Tucker-2',
)
BLOCK = 'decompose_scenes_det'


def test_map(config: str, checkpoint: str, work_dir: str) -> float:
    """Val mAP (%) of ``checkpoint`` under ``config`` (mmengine Runner).

    Args:
        config (str): Config path.
        checkpoint (str): Weights to load.
        work_dir (str): Work dir of the test run.

    Returns:
        float: ``coco/bbox_mAP`` in percent.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmcompress  # noqa: F401

    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.load_from = work_dir, checkpoint
    return 100.0 * float(Runner.from_cfg(cfg).test()[METRIC])


def json_record(path: str, compute) -> dict:
    """The record stored at ``path``, or ``compute()`` stored there first
    (an interrupted benchmark resumes from the records it left).

    Args:
        path (str): The record's json file.
        compute (callable): Makes the record when the file is missing.

    Returns:
        dict: The record.
    """
    if osp.isfile(path):
        with open(path) as handle:
            return json.load(handle)
    record = compute()
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as handle:
        json.dump(record, handle, indent=1)
    return record


def ensure_trained(args) -> str:
    """The trained detector's checkpoint (trained, seed 0, when missing)."""
    checkpoint = osp.join(REPO_ROOT, args.checkpoint)
    if not osp.isfile(checkpoint):
        work_dir = osp.dirname(checkpoint)
        path = write_run_config(CONFIG, work_dir, args.data_root, None, 0, {})
        train('mmdet', path, work_dir)
    return checkpoint


def decompose(method: str, checkpoint: str, args) -> dict:
    """Plan and weights of ``method`` (tools/decompose.py, reused when
    present) and the mAP right after decomposition.

    Returns:
        dict: The tool's JSON line plus ``config`` (the decomposed config)
        and ``map_init``.
    """
    out_dir = osp.join(args.work_root, method)

    def run():
        command = [sys.executable, osp.join(REPO_ROOT, 'tools/decompose.py')]
        command += [CONFIG, checkpoint, '--flops-ratio', str(args.backbone_ratio)]
        command += ['--method', method, '--include', 'backbone.*', '--flops-of']
        command += ['selected', '--shape', '1', '3', '128', '128']
        command += ['--out-dir', out_dir]
        proc = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        config = glob.glob(osp.join(out_dir, '*.py'))[0]
        result['config'] = osp.relpath(config, REPO_ROOT)
        weights = osp.join(out_dir, 'decomposed.pth')
        result['map_init'] = test_map(config, weights, osp.join(out_dir, 'test_init'))
        return result

    return json_record(osp.join(out_dir, 'decompose.json'), run)


def finetune(arm: str, seed: int, checkpoint: str, args) -> dict:
    """The KD fine-tune of one arm and seed (reused when its record exists).

    Returns:
        dict: ``arm``, ``seed``, ``map`` (val mAP %, last checkpoint),
        ``minutes``, the load averages around the run and, for decomposed
        arms, the decomposition record.
    """
    work_dir = osp.join(args.work_root, f'{arm}_kd{args.iters}it_s{seed}')

    def run():
        overrides = dict(
            model=dict(teacher=dict(checkpoint=checkpoint)), load_from=checkpoint
        )
        decomposed = None
        if arm != 'none':
            decomposed = decompose(arm, checkpoint, args)
            student = osp.join(REPO_ROOT, decomposed['config'])
            overrides['model']['student'] = dict(config=student)
        path = write_run_config(
            KD_CONFIG, work_dir, args.data_root, args.iters, seed, overrides
        )
        load_before = os.getloadavg()[0]
        seconds = train('mmdet', path, work_dir)
        record = dict(
            arm=arm,
            seed=seed,
            iters=args.iters,
            map=100.0 * final_metrics(work_dir)[METRIC],
            minutes=round(seconds / 60, 2),
            load_before=round(load_before, 2),
            load_after=round(os.getloadavg()[0], 2),
            decomposition=decomposed,
        )
        print(json.dumps(record), flush=True)
        return record

    return json_record(osp.join(work_dir, 'benchmark.json'), run)


def _mean_std(values) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.1f} ± {std:.1f}'


def table(runs: list, trained_map: float, args) -> str:
    """Markdown block: per arm, the FLOPs of backbone and model, mAP after
    decomposition and after the fine-tune (mean +- std over seeds), the drop
    against the control of the same seeds and against the trained model.

    Args:
        runs (list): Records of :func:`finetune`.
        trained_map (float): Val mAP of the trained detector.
        args (argparse.Namespace): The benchmark's arguments.

    Returns:
        str: The block.
    """
    control = {r['seed']: r['map'] for r in runs if r['arm'] == 'none'}
    lines = [
        f'Trained detector: `{CONFIG}` (`{args.checkpoint}`, seed 0), val mAP '
        f'{trained_map:.1f}. Backbone FLOPs target {args.backbone_ratio:g} '
        "(`tools/decompose.py --include 'backbone.*' --flops-of selected`, "
        'plans from the trained weights, 128x128 input); KD fine-tune '
        f'`{KD_CONFIG}` for {args.iters} iterations of 8 images (stock mmdet '
        '`tools/train.py`), seeds in the table; val mAP (%) of the last '
        'checkpoint on the 320 `val` images. "vs control": the fine-tuned '
        'decomposed detector minus the undecomposed detector fine-tuned with '
        'the same recipe and seed (mean of the per-seed differences).',
        '',
        'Command: `OMP_NUM_THREADS=1 python benchmarks/decompose_scenes_det.py '
        f'--seeds {" ".join(str(s) for s in sorted({r["seed"] for r in runs}))} '
        f'--iters {args.iters} --out {args.out}`',
        '',
        '| arm | backbone FLOPs | model FLOPs | mAP after decomposition | '
        'mAP after KD fine-tune | vs control | vs trained | seeds | per-seed mAP | '
        'minutes / run (load) |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for arm in ARMS:
        arm_runs = sorted((r for r in runs if r['arm'] == arm), key=lambda r: r['seed'])
        if not arm_runs:
            continue
        maps = [r['map'] for r in arm_runs]
        dec = arm_runs[0]['decomposition']
        if dec is None:
            backbone, model, init = '1.00', '1.00', f'{trained_map:.1f}'
        else:
            backbone = f'{dec["selected_ratio"]:.2f}'
            model = f'{dec["ratio"]:.2f}'
            init = f'{dec["map_init"]:.1f}'
        gaps = [r['map'] - control[r['seed']] for r in arm_runs if r['seed'] in control]
        vs_control = (
            '' if arm == 'none' or not gaps else f'{statistics.mean(gaps):+.1f}'
        )
        minutes = statistics.mean(r['minutes'] for r in arm_runs)
        loads = [r['load_before'] for r in arm_runs] + [
            r['load_after'] for r in arm_runs
        ]
        lines.append(
            f'| {NAMES[arm]} | {backbone} | {model} | {init} | {_mean_std(maps)} | '
            f'{vs_control} | {statistics.mean(maps) - trained_map:+.1f} | '
            f'{", ".join(str(r["seed"]) for r in arm_runs)} | '
            f'{" / ".join(f"{m:.1f}" for m in maps)} | '
            f'{minutes:.1f} ({min(loads):.1f}-{max(loads):.1f}) |'
        )
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--arms', nargs='+', default=list(ARMS), choices=ARMS)
    parser.add_argument('--iters', type=int, default=800, help='fine-tune iterations')
    parser.add_argument(
        '--backbone-ratio',
        type=float,
        default=0.5,
        help='FLOPs the backbone keeps (0.5: -50 %%)',
    )
    parser.add_argument('--checkpoint', default=CHECKPOINT)
    parser.add_argument('--data-root', default=DEFAULT_DATA_ROOT)
    parser.add_argument('--work-root', default='work_dirs/decompose_scenes_det')
    parser.add_argument('--out', help='markdown page for the block')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.work_root = osp.join(REPO_ROOT, args.work_root)
    checkpoint = ensure_trained(args)

    def test_trained():
        start = time.perf_counter()
        value = test_map(
            osp.join(REPO_ROOT, CONFIG),
            checkpoint,
            osp.join(args.work_root, 'test_trained'),
        )
        return dict(map=value, seconds=time.perf_counter() - start)

    trained = json_record(osp.join(args.work_root, 'trained.json'), test_trained)
    trained_map = trained['map']
    for arm in args.arms:
        if arm != 'none':
            decompose(arm, checkpoint, args)
    for seed in args.seeds:
        for arm in args.arms:
            finetune(arm, seed, checkpoint, args)
    if args.out:
        runs = []
        pattern = osp.join(args.work_root, f'*_kd{args.iters}it_s*', 'benchmark.json')
        for path in sorted(glob.glob(pattern)):
            with open(path) as handle:
                runs.append(json.load(handle))
        block = f'{BLOCK}_{args.iters}it'
        write_block(args.out, block, table(runs, trained_map, args))


if __name__ == '__main__':
    main()
