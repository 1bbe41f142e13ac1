"""Post-training quantization of a float checkpoint with a QAT-style config.

The config is any ``QuantizedModel`` config (the one QAT would train); its
optional top-level ``ptq`` dict sets the calibration (keys below, command-line
flags override them). The output checkpoint holds the calibrated quantizer state,
so stock ``tools/test.py CONFIG OUT`` evaluates it and ``tools/export_onnx.py
CONFIG OUT`` exports it exactly as a QAT checkpoint.

``ptq`` keys (defaults): ``num_images`` (1024), ``calib_dataloader`` (the
config's ``train_dataloader``), ``weight_observer`` / ``act_observer``
(``dict(type='MinMaxObserver')``), ``method`` (``'rtn'``: ranges only;
``'adaround'``: layer-wise AdaRound; ``'unit'``: unit-wise reconstruction of
``units``), ``units`` (name patterns, e.g. ``['re:backbone\\.layer\\d+\\.\\d+']``),
``reconstruction`` (arguments of :func:`mmcompress.quant.ptq.reconstruct`:
``iters``, ``batch_size``, ``loss`` ('mse' | 'fisher'), ``lam``, ``lr``,
``warm_up``, ``learn_act_steps``, ``act_lr``), ``seed`` (0),
``images_per_class`` (None: ``num_images`` random images; k: k images of every
class, the limited data of Yuan et al.), ``kd`` (None; a dict of
:func:`mmcompress.quant.ptq.distill` arguments ``iters``, ``batch_size``,
``lr``, ``loss`` ('kl' | 'mse'), ``temperature``, ``train_weights``: stage 2,
the joint KD of the whole quantized model from the float one after the
``method``'s stage 1).

Examples:
    python tools/ptq.py configs/quant/mmpretrain/ptq_w8a8_fmnist.py FP.pth \\
        --out work_dirs/ptq_w8a8/ptq.pth --test
    python tools/ptq.py configs/quant/mmpretrain/ptq_w4a4_fmnist.py FP.pth \\
        --method unit --iters 2000 --out w4a4_unit.pth --plot sqnr.png
    # Yuan et al.: 10 images per class, unit-wise stage 1, joint KD stage 2
    python tools/ptq.py configs/quant/mmpretrain/ptq_kd_w4a4_fmnist.py FP.pth \\
        --images-per-class 10 --kd-iters 500 --test
"""

import argparse
import copy
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import weights_to_cpu

import mmcompress  # noqa: F401  (compatibility fixes and registration first)
from mmcompress.quant.ptq import (
    cache_batches,
    calibrate_ranges,
    distill,
    layer_sqnr,
    limited_loader,
    reconstruct,
)

METHODS = ('rtn', 'adaround', 'unit')
DEFAULTS = dict(
    num_images=1024,
    calib_dataloader=None,
    weight_observer=dict(type='MinMaxObserver'),
    act_observer=dict(type='MinMaxObserver'),
    method='rtn',
    units=None,
    reconstruction=dict(),
    seed=0,
    images_per_class=None,
    kd=None,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description='Post-training quantization')
    parser.add_argument('config', help='QuantizedModel config (QAT-style)')
    parser.add_argument('checkpoint', help='float checkpoint')
    parser.add_argument('--out', help='output checkpoint (default WORK_DIR/ptq.pth)')
    parser.add_argument('--work-dir', help='folder for logs and the resume state')
    parser.add_argument('--method', choices=METHODS, help='overrides ptq.method')
    parser.add_argument('--num-images', type=int, help='calibration images')
    parser.add_argument('--iters', type=int, help='reconstruction iterations per unit')
    parser.add_argument('--loss', choices=('mse', 'fisher'), help='reconstruction loss')
    parser.add_argument('--seed', type=int, help='calibration sampling seed')
    parser.add_argument(
        '--images-per-class',
        type=int,
        help='limited data: k images of every class (overrides --num-images)',
    )
    parser.add_argument(
        '--kd-iters',
        type=int,
        help='stage-2 joint KD iterations (0: no stage 2); overrides ptq.kd.iters',
    )
    parser.add_argument(
        '--resume', action='store_true', help='continue from WORK_DIR/ptq_state.pth'
    )
    parser.add_argument('--test', action='store_true', help='evaluate the result')
    parser.add_argument('--onnx', help='also export the QDQ ONNX model here')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[1, 3, 224, 224],
        help='ONNX example input N C H W',
    )
    parser.add_argument('--plot', help='per-layer SQNR plot (.png; a .json beside it)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings'
    )
    return parser


def fail(message: str) -> None:
    """Exit with one line on stderr (no traceback): a user mistake."""
    sys.exit(f'ptq.py: error: {message}')


def settings(cfg: Config, args) -> dict:
    """The ``ptq`` settings: defaults, the config's, then the flags."""
    given = dict(cfg.get('ptq') or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        fail(f'unknown ptq keys {unknown}; valid keys: {sorted(DEFAULTS)}')
    result = {**DEFAULTS, **given}
    result['reconstruction'] = dict(result['reconstruction'] or {})
    for key in ('method', 'num_images', 'seed', 'images_per_class'):
        if getattr(args, key) is not None:
            result[key] = getattr(args, key)
    if args.kd_iters is not None:
        result['kd'] = {**(result['kd'] or {}), 'iters': args.kd_iters}
    if result['kd'] is not None and result['kd'].get('iters') == 0:
        result['kd'] = None
    if args.iters is not None:
        result['reconstruction']['iters'] = args.iters
    if args.loss is not None:
        result['reconstruction']['loss'] = args.loss
    if result['method'] not in METHODS:
        fail(f'ptq.method must be one of {METHODS}, got {result["method"]!r}')
    if result['method'] == 'unit' and not result['units']:
        fail(
            "method 'unit' needs ptq.units (module name patterns, e.g. "
            "['re:backbone\\.layer\\d+\\.\\d+'])"
        )
    if not isinstance(result['num_images'], int) or result['num_images'] < 1:
        fail(
            f'the number of calibration images must be >= 1, got '
            f'{result["num_images"]!r}'
        )
    return result


def save(model, path: str, meta: dict, **extra) -> None:
    """Write ``model``'s state as an mmengine checkpoint."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    # plain containers only (ConfigDict is refused by weights_only loading)
    meta = json.loads(json.dumps(meta))
    torch.save(
        dict(meta=meta, state_dict=weights_to_cpu(model.state_dict()), **extra), path
    )


def plot_sqnr(sqnr: dict, path: str, title: str) -> None:
    """Bar plot of the per-layer SQNR and its numbers as JSON beside it."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(sqnr)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 4))
    xs = range(len(names))
    ax.bar(
        [x - 0.2 for x in xs],
        [v[0] for v in sqnr.values()],
        0.4,
        label='layer alone (float input)',
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [v[1] for v in sqnr.values()],
        0.4,
        label='in the quantized model',
    )
    ax.set_xticks(list(xs), names, rotation=75, ha='right', fontsize=7)
    ax.set_ylabel('SQNR of the layer output (dB)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    with open(osp.splitext(path)[0] + '.json', 'w') as file:
        json.dump(
            {n: dict(own_db=v[0], model_db=v[1]) for n, v in sqnr.items()},
            file,
            indent=1,
        )


def run_ptq(runner: Runner, opts: dict, args, state_path: str):
    """Calibrate and reconstruct ``runner.model`` in place; returns stats."""
    model = runner.model
    loader_cfg = opts['calib_dataloader'] or runner.cfg.train_dataloader
    loader = Runner.build_dataloader(loader_cfg, seed=opts['seed'])
    num_images = opts['num_images']
    if opts['images_per_class'] is not None:
        loader = limited_loader(loader, opts['images_per_class'], opts['seed'])
        num_images = len(loader.dataset)
    progress = not args.no_progress
    batches = cache_batches(model, loader, num_images, progress)
    # stage 2's teacher: the float model, before calibration and rounding
    teacher = copy.deepcopy(model) if opts['kd'] is not None else None
    stats, done = {}, []
    if args.resume and osp.isfile(state_path):
        state = torch.load(state_path, map_location='cpu', weights_only=True)
        model.load_state_dict(state['state_dict'])
        done = list(state['done'])
        runner.logger.info(f'PTQ resumed from {state_path}: {len(done)} units done')
    else:
        stats['calibration'] = calibrate_ranges(
            model, batches, opts['weight_observer'], opts['act_observer'], progress
        )
        save(model, state_path, dict(ptq=opts), done=[])
    if opts['method'] != 'rtn':
        units = 'layers' if opts['method'] == 'adaround' else opts['units']

        def checkpoint_unit(name, unit_stats):
            done.append(name)
            save(model, state_path, dict(ptq=opts), done=done)

        stats['units'] = reconstruct(
            model,
            batches,
            units=units,
            seed=opts['seed'],
            done=done,
            on_unit_done=checkpoint_unit,
            progress=progress,
            **opts['reconstruction'],
        )
    if teacher is not None:
        stats['kd'] = distill(
            model, teacher, batches, seed=opts['seed'], progress=progress, **opts['kd']
        )
    return batches, stats


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.model.get('type') != 'QuantizedModel':
        fail(
            f'{args.config} builds a {cfg.model.get("type")!r} model; ptq.py needs '
            "a QuantizedModel config (model=dict(type='QuantizedModel', "
            'model=<float model>, quant=dict(w=..., a=...)))'
        )
    if not osp.isfile(args.checkpoint):
        fail(f'checkpoint {args.checkpoint} does not exist')
    opts = settings(cfg, args)
    cfg.work_dir = args.work_dir or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0]
    )
    cfg.load_from = None
    cfg.resume = False
    out = args.out or osp.join(cfg.work_dir, 'ptq.pth')
    runner = Runner.from_cfg(cfg)
    load_checkpoint(
        runner.model, args.checkpoint, map_location='cpu', strict=False, logger='silent'
    )
    batches, stats = run_ptq(
        runner, opts, args, osp.join(cfg.work_dir, 'ptq_state.pth')
    )
    save(runner.model, out, dict(ptq=opts, float_checkpoint=args.checkpoint))
    runner.logger.info(f'PTQ checkpoint written to {out}')
    result = dict(checkpoint=out, **stats)
    if args.plot:
        sqnr = layer_sqnr(runner.model, batches[:4])
        plot_sqnr(sqnr, args.plot, f'{osp.basename(args.config)} ({opts["method"]})')
        result['sqnr_plot'] = args.plot
    if args.onnx:
        from mmcompress.quant.export import TensorModeWrapper, export_onnx

        wrapper = TensorModeWrapper(runner.model.eval())
        data = export_onnx(wrapper, torch.randn(*args.shape))
        with open(args.onnx, 'wb') as file:
            file.write(data)
        result['onnx'] = args.onnx
    if args.test:
        result['test'] = runner.test()
    print(json.dumps(result, default=str))
    return result


if __name__ == '__main__':
    main()
