"""PISR on the scikit-image photos: bicubic / plain FSRCNN / PISR student /
student with L1 feature KD / student initialised from the teacher's decoder
without distillation, PSNR and SSIM on the held-out photos.

Every run is the stock ``mmpretrain`` ``tools/train.py`` on a config of
``configs/pisr/mmpretrain`` with ``randomness.seed`` set and the schedule
(``--iters``, cosine to 1e-5 over it) passed as ``--cfg-options``. The teacher
(step 1) is trained once per scale with seed 0; each seed then trains every
other arm. Each run leaves ``benchmark.json`` in its work dir; the table is
assembled from every finished run.

Usage::

    python benchmarks/pisr_photos.py --scale 2 --iters 1200 --batch 4 --jobs 4
    python benchmarks/pisr_photos.py --scale 2 --iters 1200 --batch 4 --table-only \
        --out docs/models/pisr.md
"""

import argparse
import glob
import json
import os.path as osp
import statistics
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from scenes_baselines import REPO_ROOT, final_metrics, run_in_pool, train  # noqa: E402

WORK_ROOT = osp.join(REPO_ROOT, 'work_dirs', 'pisr_photos')
CFG = 'configs/pisr/mmpretrain/{}_x{}_photos.py'
# arm -> (config name, extra --cfg-options)
ARMS = {
    'FSRCNN (L1)': ('fsrcnn', []),
    'PISR student (Laplace VID)': ('pisr_student', []),
    'student, L1 feature KD': ('pisr_student-l1kd', []),
    'student, teacher init only': (
        'pisr_student',
        ['model.distill.expanding.loss.loss_weight=0.0'],
    ),
}


def schedule(iters: int, batch: int) -> list:
    """``--cfg-options`` items of a run of ``iters`` iterations of ``batch``."""
    return [
        f'train_dataloader.batch_size={batch}',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.T_max={iters}',
        f'default_hooks.checkpoint.interval={iters}',
    ]


def setting(scale: int, iters: int, batch: int) -> str:
    return osp.join(WORK_ROOT, f'x{scale}_{iters}it_b{batch}')


def run_dir(scale: int, iters: int, batch: int, arm: str, seed: int) -> str:
    slug = arm.split(' (')[0].replace(' ', '_').replace(',', '')
    return osp.join(setting(scale, iters, batch), f'{slug}_seed{seed}')


def teacher_checkpoint(scale: int, iters: int, batch: int) -> str:
    """Train the step-1 teacher once (seed 0); return its checkpoint."""
    work_dir = run_dir(scale, iters, batch, 'teacher', 0)
    path = osp.join(work_dir, f'iter_{iters}.pth')
    if osp.isfile(path) and not osp.isfile(osp.join(work_dir, 'benchmark.json')):
        record(work_dir, 'teacher (sees HR)', 0, None)
    if not osp.isfile(path):
        seconds = train(
            'mmpretrain',
            CFG.format('pisr_teacher', scale),
            work_dir,
            [*schedule(iters, batch), 'randomness.seed=0'],
        )
        record(work_dir, 'teacher (sees HR)', 0, seconds)
    return path


def record(work_dir: str, arm: str, seed: int, seconds: float) -> dict:
    metrics = final_metrics(work_dir)
    result = dict(
        arm=arm,
        seed=seed,
        psnr=metrics['sr/psnr'],
        ssim=metrics['sr/ssim'],
        seconds=seconds,
    )
    with open(osp.join(work_dir, 'benchmark.json'), 'w') as handle:
        json.dump(result, handle)
    return result


def run_arm(item) -> dict:
    scale, iters, batch, arm, seed = item
    if arm == 'teacher':
        return teacher_checkpoint(scale, iters, batch)
    work_dir = run_dir(scale, iters, batch, arm, seed)
    if osp.isfile(osp.join(work_dir, 'benchmark.json')):
        with open(osp.join(work_dir, 'benchmark.json')) as handle:
            return json.load(handle)
    if osp.isfile(osp.join(work_dir, f'iter_{iters}.pth')):
        return record(work_dir, arm, seed, None)  # finished by an earlier call
    name, extra = ARMS[arm]
    options = [*schedule(iters, batch), f'randomness.seed={seed}', *extra]
    if name != 'fsrcnn':
        teacher = teacher_checkpoint(scale, iters, batch)
        options.append(f'model.teacher.checkpoint={teacher}')
    seconds = train('mmpretrain', CFG.format(name, scale), work_dir, options)
    return record(work_dir, arm, seed, seconds)


def bicubic(scale: int) -> dict:
    """PSNR / SSIM of bicubic upsampling on the held-out photos."""
    import torch.nn.functional as F

    from mmcompress.datasets import SRPhotoDataset
    from mmcompress.models.sr import SRQualityMetric

    dataset = SRPhotoDataset(scale=scale)
    metric = SRQualityMetric(crop_border=scale)
    for index in range(len(dataset)):
        item = dataset[index]
        pred = F.interpolate(item['inputs'][None], scale_factor=scale, mode='bicubic')
        metric.process({}, [dict(pred_img=pred[0], gt_img=item['data_samples'].gt_img)])
    return metric.compute_metrics(metric.results)


def table(scale: int, iters: int, batch: int) -> str:
    results = []
    for path in glob.glob(
        osp.join(setting(scale, iters, batch), '*', 'benchmark.json')
    ):
        with open(path) as handle:
            results.append(json.load(handle))
    base = bicubic(scale)
    lines = [
        f'x{scale}, {iters} iterations of batch {batch} per stage, PSNR (dB) / SSIM '
        'on the held-out photos (Y channel, border of scale pixels cropped); '
        'mean +- std over seeds',
        '',
        '| method | seeds | PSNR | SSIM | per-seed PSNR |',
        '|---|---|---|---|---|',
        f'| bicubic | - | {base["psnr"]:.2f} | {base["ssim"]:.4f} | - |',
    ]
    for arm in ['teacher (sees HR)', *ARMS]:
        rows = sorted((r for r in results if r['arm'] == arm), key=lambda r: r['seed'])
        if not rows:
            continue
        psnrs = [r['psnr'] for r in rows]
        ssims = [r['ssim'] for r in rows]
        spread = f' +- {statistics.stdev(psnrs):.2f}' if len(rows) > 1 else ''
        lines.append(
            f'| {arm} | {",".join(str(r["seed"]) for r in rows)} | '
            f'{statistics.mean(psnrs):.2f}{spread} | {statistics.mean(ssims):.4f} | '
            f'{" ".join(f"{p:.2f}" for p in psnrs)} |'
        )
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--arms', nargs='+', default=list(ARMS))
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--jobs', type=int, default=1)
    parser.add_argument('--table-only', action='store_true')
    parser.add_argument('--out', help='markdown page to write the table into')
    args = parser.parse_args()
    if not args.table_only:
        # the teacher and the arms without a teacher first, then the students
        key = (args.scale, args.iters, args.batch)
        first = [(*key, 'teacher', 0)] + [
            (*key, arm, seed)
            for seed in args.seeds
            for arm in args.arms
            if ARMS[arm][0] == 'fsrcnn'
        ]
        rest = [
            (*key, arm, seed)
            for seed in args.seeds
            for arm in args.arms
            if ARMS[arm][0] != 'fsrcnn'
        ]
        run_in_pool(args.jobs, run_arm, first)
        run_in_pool(args.jobs, run_arm, rest)
    text = table(args.scale, args.iters, args.batch)
    print(text)
    if args.out:
        write_block(args.out, f'pisr-x{args.scale}-{args.iters}-b{args.batch}', text)


if __name__ == '__main__':
    main()
