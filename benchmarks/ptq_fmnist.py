"""Post-training quantization of the Fashion-MNIST student: accuracy table.

For one float checkpoint of the student (CIFAR-style ResNet-18, widths 8/16/32),
runs ``tools/ptq.py`` in this process for each row and evaluates the result on
the official 10k test split:

* W8A8: min-max and MSE-optimal ranges (no reconstruction), and the anchor:
  onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8
  activations, MinMax calibration) of the float ONNX on the same calibration
  images, with the stem conv and the fc left float as in the PTQ configs;
* W4A4 / W3A3 (per-channel weights, MSE ranges): round-to-nearest, layer-wise
  AdaRound, unit-wise reconstruction of the residual blocks (MSE and Fisher),
  over seeds (the seed draws the calibration images and the mini-batches).

Finished runs are kept in ``results.jsonl`` of ``--work-dir`` and skipped when
run again.

Usage (e.g.; CPU minutes per reconstruction run):
    OMP_NUM_THREADS=1 python benchmarks/ptq_fmnist.py FP32.pth --seeds 0 1 2 \
        --bits 4 --iters 1000 --out /tmp/ptq_table.md
"""

import argparse
import json
import os
import os.path as osp
import runpy
import statistics
import sys
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint

import mmcompress  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs', 'quant', 'mmpretrain')
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from quant_export import _float_onnx, _ort_static_qdq  # noqa: E402

LOADER_OPTS = [
    f'{split}_dataloader.{key}={value}'
    for split in ('train', 'test')
    for key, value in (('num_workers', 0), ('persistent_workers', False))
]


def load_tool():
    """tools/ptq.py's ``main``, to run the tool in this process.

    Returns:
        callable: ``main(argv)`` of the tool.
    """
    return runpy.run_path(osp.join(ROOT, 'tools', 'ptq.py'))['main']


def ptq_run(tool, row, ckpt, work_dir, num_images, iters, test):
    argv = [
        osp.join(CONFIGS, row['config']),
        ckpt,
        '--work-dir',
        work_dir,
        '--method',
        row['method'],
        '--seed',
        str(row['seed']),
        '--num-images',
        str(num_images),
        '--no-progress',
        '--test',
        *row['flags'],
        '--cfg-options',
        *LOADER_OPTS,
        f'test_dataloader.dataset.subset_size={test}',
        *row['options'],
    ]
    if row['method'] != 'rtn':
        argv[2:2] = ['--iters', str(iters), '--loss', row['loss']]
    start = time.time()
    result = tool(argv)
    return result['test']['accuracy/top1'], time.time() - start


def float_and_ort(ckpt, seed, num_images, test_size):
    """FP32 top-1 and the onnxruntime quantize_static anchor on the same
    calibration images (the train loader of ptq_w8a8_fmnist.py, this seed)."""
    import onnx
    import onnxruntime as ort

    from mmcompress.quant.ptq import cache_batches

    cfg = Config.fromfile(osp.join(CONFIGS, 'ptq_w8a8_fmnist.py'))
    for split in ('train', 'test'):
        cfg[f'{split}_dataloader'].num_workers = 0
        cfg[f'{split}_dataloader'].persistent_workers = False
    cfg.test_dataloader.dataset.subset_size = test_size
    DefaultScope.get_instance(f'ptq_bench_{seed}', scope_name='mmpretrain')
    model_cfg = cfg.model.model
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    calib = cache_batches(
        model,
        Runner.build_dataloader(cfg.train_dataloader, seed=seed),
        num_images,
        False,
    )
    inputs, labels = [], []
    for batch in Runner.build_dataloader(cfg.test_dataloader):
        data = model.data_preprocessor(batch, False)
        inputs.append(data['inputs'])
        labels.append(torch.tensor([s.gt_label.item() for s in data['data_samples']]))
    labels = torch.cat(labels)
    with torch.no_grad():
        fp = torch.cat([model(x, mode='tensor') for x in inputs]).argmax(1)
    fp_acc = (fp == labels).float().mean().item() * 100
    float_onnx = _float_onnx(model, inputs[0][:1])
    graph = onnx.load_from_string(float_onnx).graph
    # the PTQ configs keep the stem conv and the fc float: so does the anchor
    keep = [n.name for n in graph.node if n.op_type == 'Conv'][:1]
    keep += [n.name for n in graph.node if n.op_type == 'Gemm']
    # the float ONNX has a fixed batch of 1: images one by one
    images = [x[None] for b in calib for x in b['inputs']]
    qdq = _ort_static_qdq(float_onnx, images, nodes_to_exclude=keep)
    session = ort.InferenceSession(qdq, providers=['CPUExecutionProvider'])
    preds = np.concatenate(
        [session.run(None, {'input': x[None].numpy()})[0] for b in inputs for x in b]
    )
    ort_acc = float((preds.argmax(1) == labels.numpy()).mean() * 100)
    return fp_acc, ort_acc


def row(name, config, method, seed, loss='mse', flags=(), options=(), tag=''):
    """One benchmark run; ``tag`` names its work folder beside config/method."""
    return dict(
        row=name,
        config=config,
        method=method,
        seed=seed,
        loss=loss,
        flags=list(flags),
        options=list(options),
        tag=tag,
    )


METHOD_NAMES = dict(
    rtn='round-to-nearest',
    adaround='AdaRound (layer-wise)',
    unit='unit-wise (blocks, MSE)',
)
# weight granularity rows: per tensor, G contiguous output-channel groups
GRANULARITY = dict(
    tensor=('per-tensor', ['model.quant.w.per_channel=False']),
    g4=('G=4', ['model.quant.w.num_groups=4']),
    g8=('G=8', ['model.quant.w.num_groups=8']),
)


def kd_rows(args, wa, config, seed):
    """Limited-data rows: stage 1, stage 2 and both (the config's ``ptq.kd``,
    ``--kd-iters`` and ``--kd-options`` over it)."""
    k = f'{args.images_per_class}/class'
    common = ['--images-per-class', str(args.images_per_class)]
    kd = common + (['--kd-iters', str(args.kd_iters)] if args.kd_iters else [])
    options = [f'ptq.kd.{o}' for o in args.kd_options]
    label = f', {args.kd_label}' if args.kd_label else ''
    return [
        row(
            f'{wa} {k} stage 1 (unit-wise)',
            config,
            'unit',
            seed,
            flags=common + ['--kd-iters', '0'],
            tag='s1',
        ),
        row(
            f'{wa} {k} stage 2 (joint KD{label})',
            config,
            'rtn',
            seed,
            flags=kd,
            options=options,
            tag='s2' + args.kd_label.replace(' ', ''),
        ),
        row(
            f'{wa} {k} stages 1 + 2{label}',
            config,
            'unit',
            seed,
            flags=kd,
            options=options,
            tag='s12' + args.kd_label.replace(' ', ''),
        ),
    ]


def rows_for(args):
    rows = [row('W8A8 min-max', 'ptq_w8a8_fmnist.py', 'rtn', 0)]
    rows.append(row('W8A8 MSE ranges', 'ptq_w8a8_mse_fmnist.py', 'rtn', 0))
    for bits in args.bits:
        wa, config = f'W{bits}A{bits}', f'ptq_w{bits}a{bits}_fmnist.py'
        kd_config = f'ptq_kd_w{bits}a{bits}_fmnist.py'
        for seed in args.seeds:
            if not args.only_extra:
                rows += [
                    row(f'{wa} {name}', config, method, seed)
                    for method, name in METHOD_NAMES.items()
                ]
            if args.fisher:
                rows.append(
                    row(
                        f'{wa} unit-wise (blocks, Fisher)',
                        config,
                        'unit',
                        seed,
                        'fisher',
                    )
                )
            for tag in args.granularity:
                label, options = GRANULARITY[tag]
                rows += [
                    row(
                        f'{wa} {label} {METHOD_NAMES[m]}',
                        config,
                        m,
                        seed,
                        options=options,
                        tag=tag,
                    )
                    for m in args.granularity_methods
                ]
            if args.kd:
                rows += kd_rows(args, wa, kd_config, seed)
    return rows


def write_table(results, fp_acc, args):
    groups = {}
    for r in results:
        groups.setdefault(r['row'], []).append(r)
    lines = [
        f'FP32: {fp_acc:.2f}% top-1 ({args.test_size or 10000} test images). '
        f'Calibration: {args.num_images} '
        f'training images; reconstruction: {args.iters} iterations per unit, batch 32.',
        '',
        '| setting | top-1 mean | std | runs (seeds) | vs FP32 (pt) | s per run |',
        '|---|---|---|---|---|---|',
    ]
    for name, runs in groups.items():
        accs = [r['top1'] for r in runs]
        mean = statistics.mean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        seeds = ', '.join(f'{r["top1"]:.2f} ({r["seed"]})' for r in runs)
        secs = statistics.mean(r['seconds'] for r in runs)
        lines.append(
            f'| {name} | {mean:.2f} | {std:.2f} | {seeds} | {mean - fp_acc:+.2f} '
            f'| {secs:.0f} |'
        )
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='float checkpoint of the student')
    parser.add_argument('--work-dir', default='work_dirs/ptq_fmnist_bench')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--bits', type=int, nargs='*', default=[4])
    parser.add_argument('--num-images', type=int, default=1024)
    parser.add_argument('--iters', type=int, default=1000)
    parser.add_argument(
        '--fisher', action='store_true', help='add unit-wise Fisher rows'
    )
    parser.add_argument(
        '--only-extra',
        action='store_true',
        help='skip the round-to-nearest / AdaRound / unit-wise rows of --bits',
    )
    parser.add_argument(
        '--granularity',
        nargs='*',
        default=[],
        choices=sorted(GRANULARITY),
        help='weight granularity rows (round-to-nearest and unit-wise)',
    )
    parser.add_argument(
        '--granularity-methods',
        nargs='+',
        default=['rtn', 'unit'],
        choices=['rtn', 'unit'],
        help='methods of the --granularity rows',
    )
    parser.add_argument(
        '--kd',
        action='store_true',
        help='limited-data rows: stage 1, stage 2 and both (ptq_kd_* configs)',
    )
    parser.add_argument('--images-per-class', type=int, default=10)
    parser.add_argument(
        '--kd-iters', type=int, help='stage-2 iterations (default: the config)'
    )
    parser.add_argument(
        '--kd-options',
        nargs='*',
        default=[],
        help='KEY=VALUE settings of ptq.kd for the stage-2 rows (lr=1e-4 ...)',
    )
    parser.add_argument(
        '--kd-label', default='', help='added to the names of the stage-2 rows'
    )
    parser.add_argument('--out', help='markdown table file')
    parser.add_argument(
        '--test-size', type=int, help='class-balanced test subset (default: all 10k)'
    )
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    store = osp.join(args.work_dir, 'results.jsonl')
    done = []
    if osp.isfile(store):
        with open(store) as file:
            done = [json.loads(line) for line in file]
    key = lambda r: (r['row'], r['seed'], r.get('iters'), r.get('num_images'))  # noqa: E731
    have = {key(r) for r in done}
    fp = [r for r in done if r['row'] == 'FP32']
    if not fp:
        fp_acc, ort_acc = float_and_ort(
            args.checkpoint, 0, args.num_images, args.test_size
        )
        for name, acc in (
            ('FP32', fp_acc),
            ('W8A8 onnxruntime quantize_static', ort_acc),
        ):
            done.append(dict(row=name, seed=0, top1=acc, seconds=0.0))
            with open(store, 'a') as file:
                file.write(json.dumps(done[-1]) + '\n')
    fp_acc = [r for r in done if r['row'] == 'FP32'][0]['top1']
    tool = load_tool()
    for spec in rows_for(args):
        record = dict(
            row=spec['row'],
            seed=spec['seed'],
            iters=args.iters,
            num_images=args.num_images,
        )
        if key(record) in have:
            continue
        config = osp.splitext(spec['config'])[0]
        work = osp.join(
            args.work_dir,
            f'{config}_{spec["method"]}_{spec["loss"]}{spec["tag"]}_s{spec["seed"]}',
        )
        top1, seconds = ptq_run(
            tool,
            spec,
            args.checkpoint,
            work,
            args.num_images,
            args.iters,
            args.test_size,
        )
        record.update(top1=top1, seconds=seconds)
        done.append(record)
        with open(store, 'a') as file:
            file.write(json.dumps(record) + '\n')
        write_table([r for r in done if r['row'] != 'FP32'], fp_acc, args)
    write_table([r for r in done if r['row'] != 'FP32'], fp_acc, args)


if __name__ == '__main__':
    main()
