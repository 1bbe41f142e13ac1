"""Stage-2 settings of the limited-data two-stage KD on the validation split.

For each seed, draws the limited data of a ``ptq_kd_*`` config (``k`` training
images per class), calibrates the ranges and runs stage 1 (unit-wise
reconstruction) once, exactly as ``tools/ptq.py`` does, then runs stage 2
(:func:`mmcompress.quant.ptq.distill`) with every given setting, from the
stage-1 model (``s12``) and from the round-to-nearest model (``s2``), and
scores every model on the ``val`` split of Fashion-MNIST (5k images held out of
the training set: disjoint from the calibration images and from the test split
of the benchmark tables). Rows are appended to ``--out`` (JSON lines).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/ptq_kd_val.py STUDENT.pth --seeds 0 1 \\
        --settings 500,1e-4,all 500,1e-5,all 500,1e-4,steps --out kd_val.jsonl

A setting is ``ITERS,LR,all|steps[,s2|s12]`` (``steps``:
``train_weights=False``; the last field runs it from one start only).
"""

import argparse
import copy
import json
import os.path as osp
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint

import mmcompress  # noqa: F401
from mmcompress.quant.ptq import (
    cache_batches,
    calibrate_ranges,
    distill,
    limited_loader,
    reconstruct,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'quant', 'mmpretrain', 'ptq_kd_w3a3_fmnist.py')


def parse_setting(text):
    """``ITERS,LR,all|steps[,s2|s12]`` as distill arguments and the starts."""
    fields = text.split(',')
    if len(fields) not in (3, 4) or fields[2] not in ('all', 'steps'):
        raise ValueError(f'setting {text!r} is not ITERS,LR,all|steps[,s2|s12]')
    starts = fields[3:] or ['s2', 's12']
    if not set(starts) <= {'s2', 's12'}:
        raise ValueError(f'setting {text!r}: the start is s2 or s12')
    setting = dict(
        iters=int(fields[0]), lr=float(fields[1]), train_weights=fields[2] == 'all'
    )
    return setting, starts


def val_data(cfg, model, size):
    """Preprocessed val images and labels (class-balanced subset of ``size``)."""
    loader_cfg = copy.deepcopy(cfg.val_dataloader)
    loader_cfg.num_workers, loader_cfg.persistent_workers = 0, False
    if size:
        loader_cfg.dataset.subset_size = size
    inputs, labels = [], []
    for batch in Runner.build_dataloader(loader_cfg):
        data = model.data_preprocessor(batch, False)
        inputs.append(data['inputs'])
        labels += [s.gt_label.item() for s in data['data_samples']]
    return inputs, torch.tensor(labels)


def top1(model, inputs, labels):
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(x, mode='tensor').argmax(1) for x in inputs])
    return (preds == labels).float().mean().item() * 100


def run_seed(cfg, checkpoint, seed, settings, val, record):
    """Stage 1 once, stage 2 per setting from the stage-1 and the RTN model.

    ``val`` is a dict, filled with the val images on the first call.
    """
    runner = Runner.from_cfg(cfg)  # seeds the global RNGs as tools/ptq.py does
    model = runner.model
    load_checkpoint(
        model, checkpoint, map_location='cpu', strict=False, logger='silent'
    )
    opts = cfg.ptq
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    loader = limited_loader(loader, opts.images_per_class, seed)
    batches = cache_batches(model, loader, len(loader.dataset), False)
    if 'data' not in val:  # after the calibration draw: keeps its RNG state
        val['data'] = val_data(cfg, model, val.pop('size'))
    val = val['data']
    teacher = copy.deepcopy(model)
    record(dict(seed=seed, row='FP32', val=top1(teacher, *val)))
    calibrate_ranges(
        model, batches, opts.weight_observer, opts.act_observer, progress=False
    )
    start = dict(s2=copy.deepcopy(model))
    record(dict(seed=seed, row='rtn', val=top1(model, *val)))
    reconstruct(
        model,
        batches,
        units=opts.units,
        seed=seed,
        progress=False,
        **opts.reconstruction,
    )
    start['s12'] = model
    record(dict(seed=seed, row='s1', val=top1(model, *val)))
    for setting, starts in settings:
        kd = dict(opts.kd, **setting)
        for row in starts:
            base = start[row]
            student = copy.deepcopy(base)
            tic = time.time()
            stats = distill(student, teacher, batches, seed=seed, progress=False, **kd)
            record(
                dict(
                    seed=seed,
                    row=row,
                    **setting,
                    val=top1(student, *val),
                    seconds=time.time() - tic,
                    **stats,
                )
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='float checkpoint of the student')
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--settings', nargs='+', default=['500,1e-4,all'])
    parser.add_argument('--iters', type=int, help='stage-1 iterations per unit')
    parser.add_argument('--val-size', type=int, default=0, help='0: all 5k')
    parser.add_argument('--work-dir', default='work_dirs/ptq_kd_val')
    parser.add_argument('--out', default='work_dirs/ptq_kd_val/results.jsonl')
    args = parser.parse_args()
    settings = [parse_setting(s) for s in args.settings]
    cfg = Config.fromfile(args.config)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].num_workers = 0
        cfg[f'{split}_dataloader'].persistent_workers = False
    cfg.work_dir, cfg.load_from = args.work_dir, None
    if args.iters is not None:
        cfg.ptq.reconstruction.iters = args.iters

    def record(row):
        print(json.dumps(row), flush=True)
        with open(args.out, 'a') as file:
            file.write(json.dumps(dict(config=osp.basename(args.config), **row)) + '\n')

    val = dict(size=args.val_size)
    for seed in args.seeds:
        run_seed(cfg, args.checkpoint, seed, settings, val, record)


if __name__ == '__main__':
    main()
