"""Post-training quantization of the scenes detector, segmentor and pose model.

For each task the float baseline checkpoint (the ``load_from`` of the task's
PTQ config: ``work_dirs/<baseline>/iter_N.pth``, trained by
``benchmarks/scenes_baselines.py``) is quantized by ``tools/ptq.py`` (run in
this process) and evaluated with the config's test loop (what the stock
``tools/test.py`` runs) on the 320 ``val`` images:

* ``fp32``: the float model (its baseline config);
* ``w8a8-minmax`` / ``w8a8-mse``: the W8A8 PTQ config with min-max or
  MSE-optimal ranges (no reconstruction);
* ``ort-w8a8``: the anchor, onnxruntime's ``quantize_static`` (QDQ,
  per-channel int8 weights, uint8 activations, MinMax calibration) of the
  float network's ONNX graph on the **same calibration images** (the PTQ
  config's ``ptq.calib_dataloader`` with the same seed), the layers the PTQ
  config keeps float (stem conv, prediction convs) excluded; evaluated by
  :class:`~mmcompress.quant.export.ORTModel` with the same metric
  (``tools/test_onnx.py``); ``ort-fp32`` is the same graph unquantized;
* ``w4a4-rtn`` / ``w4a4-adaround`` / ``w4a4-unit``: the W4A4 PTQ config (MSE
  ranges) with round-to-nearest, layer-wise AdaRound or unit-wise
  reconstruction.

The seed draws the calibration images (and the reconstruction mini-batches).
Finished rows are kept in ``WORK_DIR/results.jsonl`` and skipped when run
again; ``--out`` writes the table into the block ``ptq_scenes_<task>`` of a
page.

Usage (one task per process; CPU minutes per row: below a minute for W8A8):
    OMP_NUM_THREADS=1 python benchmarks/ptq_scenes.py --task det --seeds 0 1 2 \\
        --rows fp32 ort-fp32 w8a8-minmax w8a8-mse ort-w8a8 --out docs/quant/ptq.md
"""

import argparse
import json
import os
import os.path as osp
import re
import runpy
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint

import mmcompress  # noqa: F401
from mmcompress.quant.export import export_onnx
from mmcompress.quant.export.network import NetworkWrapper, add_metadata
from mmcompress.quant.ptq import cache_batches
from mmcompress.quant.ptq.calibration import quant_layers
from mmcompress.registry import MODELS

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(HERE)
sys.path.insert(0, HERE)
from doc_blocks import write_block  # noqa: E402
from export_scenes import METRICS, _metric, onnx_metric  # noqa: E402
from machine_load import LoadRecord  # noqa: E402
from quant_export import _ort_static_qdq  # noqa: E402

Q = osp.join(ROOT, 'configs', 'quant')
B = osp.join(ROOT, 'configs', 'baselines')
TASKS = dict(
    det=dict(
        float=osp.join(B, 'mmdet', 'retinanet_r18-w16_scenes.py'),
        w8=osp.join(Q, 'mmdet', 'ptq_w8a8_retinanet_r18-w16_scenes.py'),
        w4=osp.join(Q, 'mmdet', 'ptq_w4a4_retinanet_r18-w16_scenes.py'),
    ),
    seg=dict(
        float=osp.join(B, 'mmseg', 'fcn_r18-w16_scenes.py'),
        w8=osp.join(Q, 'mmseg', 'ptq_w8a8_fcn_r18-w16_scenes.py'),
        w4=osp.join(Q, 'mmseg', 'ptq_w4a4_fcn_r18-w16_scenes.py'),
    ),
    pose=dict(
        float=osp.join(B, 'mmpose', 'topdown_heatmap_r18-w16_scenes.py'),
        w8=osp.join(Q, 'mmpose', 'ptq_w8a8_topdown_heatmap_r18-w16_scenes.py'),
        w4=osp.join(Q, 'mmpose', 'ptq_w4a4_topdown_heatmap_r18-w16_scenes.py'),
    ),
)
MSE = ['ptq.weight_observer.type=MSEObserver', 'ptq.act_observer.type=MSEObserver']
#: row -> (label, PTQ config key, method, extra --cfg-options); None: not a PTQ run
ROWS = {
    'fp32': ('FP32 (PyTorch)', None, None, ()),
    'ort-fp32': ('FP32 onnxruntime (the anchor graph, unquantized)', None, None, ()),
    'w8a8-minmax': ('W8A8 PTQ min-max', 'w8', 'rtn', ()),
    'w8a8-mse': ('W8A8 PTQ MSE ranges', 'w8', 'rtn', tuple(MSE)),
    'ort-w8a8': ('W8A8 onnxruntime quantize_static', None, None, ()),
    'w4a4-rtn': ('W4A4 round-to-nearest (MSE ranges)', 'w4', 'rtn', ()),
    'w4a4-adaround': ('W4A4 AdaRound (layer-wise)', 'w4', 'adaround', ()),
    'w4a4-unit': ('W4A4 unit-wise (MSE)', 'w4', 'unit', ()),
}
SEEDLESS = ('fp32', 'ort-fp32')


def float_layers(config: str) -> list:
    """Names of the conv / linear layers the PTQ config keeps float."""
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        quantized = MODELS.build(cfg.model)
        plain = MODELS.build(cfg.model.model)
    kinds = (
        torch.nn.Conv1d,
        torch.nn.Conv2d,
        torch.nn.ConvTranspose2d,
        torch.nn.Linear,
    )
    names = set(quant_layers(quantized))
    return [
        n for n, m in plain.named_modules() if isinstance(m, kinds) and n not in names
    ]


def node_module(node: str) -> str:
    """The module path of a torch.onnx node name: ``/backbone/layer1/layer1.0/
    conv1/Conv`` -> ``backbone.layer1.0.conv1``; a module called again (a
    shared head conv) gets ``_k`` after its scope, which is dropped."""
    parts = []
    for scope in node.strip('/').split('/')[:-1]:
        scope = re.sub(r'_\d+$', '', scope)
        # a Sequential's child is scoped '<sequential>.<index>'
        if parts and scope.startswith(parts[-1] + '.'):
            parts[-1] = scope
        else:
            parts.append(scope)
    return '.'.join(parts)


def ort_graph(task: str, seed: int, quantize: bool, path: str) -> dict:
    """Write the float network's ONNX graph (``quantize``: after
    ``quantize_static`` on the PTQ config's calibration images of ``seed``)."""
    import onnx

    spec = TASKS[task]
    cfg = Config.fromfile(spec['w8'])
    opts = cfg.ptq
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model.model)
        load_checkpoint(model, cfg.load_from, map_location='cpu', logger='silent')
        model.eval()
        loader = Runner.build_dataloader(opts.calib_dataloader, seed=seed)
        batches = cache_batches(model, loader, opts.num_images, False)
        wrapper = NetworkWrapper(model)
        example = batches[0]['inputs'][:1]
        with torch.no_grad():
            wrapper(example)
        data = export_onnx(
            wrapper,
            example,
            output_names=wrapper.output_names(),
            dynamic_size=True,
            quantized=False,
        )
    info = {}
    if quantize:
        keep = float_layers(spec['w8'])
        graph = onnx.load_from_string(data).graph
        exclude = [
            n.name
            for n in graph.node
            if n.op_type in ('Conv', 'ConvTranspose', 'Gemm')
            and node_module(n.name) in keep
        ]
        if len({node_module(n) for n in exclude}) != len(keep):
            raise RuntimeError(f'float layers {keep} not all found in {exclude}')
        data = _ort_static_qdq(data, [b['inputs'] for b in batches], exclude)
        info = dict(
            excluded=exclude, calib_images=sum(len(b['inputs']) for b in batches)
        )
    with open(path, 'wb') as file:
        file.write(add_metadata(data, wrapper.metadata()))
    return info


def ptq_row(tool, task, row, seed, iters, work_dir):
    """One tools/ptq.py run with --test; returns (metric, tool result)."""
    _, key, method, options = ROWS[row]
    argv = [
        TASKS[task][key],
        Config.fromfile(TASKS[task][key]).load_from,
        '--work-dir',
        work_dir,
        '--out',
        osp.join(work_dir, 'ptq.pth'),
        '--method',
        method,
        '--seed',
        str(seed),
        '--no-progress',
        '--test',
    ]
    if method != 'rtn' and iters is not None:
        argv += ['--iters', str(iters)]
    if options:
        argv += ['--cfg-options', *options]
    result = tool(argv)
    return _metric(task, result['test']), result


def run_row(tool, task, row, seed, iters, work_root) -> dict:
    """Measure one row (``iters``: the reconstruction iterations of an
    AdaRound / unit-wise row, else None); returns its record."""
    work_dir = osp.join(work_root, task, row, f'seed{seed}')
    os.makedirs(work_dir, exist_ok=True)
    start = time.time()
    extra = {}
    if row == 'fp32':
        cfg = Config.fromfile(TASKS[task]['float'])
        cfg.load_from = Config.fromfile(TASKS[task]['w8']).load_from
        cfg.work_dir = work_dir
        value = _metric(task, Runner.from_cfg(cfg).test())
    elif row in ('ort-fp32', 'ort-w8a8'):
        path = osp.join(work_dir, 'model.onnx')
        extra = ort_graph(task, seed, row == 'ort-w8a8', path)
        value = onnx_metric(task, TASKS[task]['float'], path, work_dir)
    else:
        value, result = ptq_row(tool, task, row, seed, iters, work_dir)
        if 'units' in result:
            extra['units'] = len(result['units'])
    return dict(
        task=task,
        row=row,
        seed=seed,
        iters=iters,
        value=value,
        seconds=time.time() - start,
        load=os.getloadavg(),
        **extra,
    )


def table(records, task) -> str:
    """Markdown table of ``task``'s rows: mean, std, per seed, vs FP32."""
    rows = [r for r in records if r['task'] == task]
    fp = [r['value'] for r in rows if r['row'] == 'fp32']
    lines = [
        f'| setting | {METRICS[task]} mean | std | runs (seeds) | vs FP32 (pt) |',
        '|---|---|---|---|---|',
    ]
    for row, (label, *_) in ROWS.items():
        found = sorted((r for r in rows if r['row'] == row), key=lambda r: r['seed'])
        if not found:
            continue
        values = [r['value'] for r in found]
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        runs = ', '.join(
            f'{r["value"]:.2f}' + ('' if row in SEEDLESS else f' ({r["seed"]})')
            for r in found
        )
        iters = found[0].get('iters')
        if iters:
            label += f', {iters} it/unit'
        delta = f'{mean - fp[0]:+.2f}' if fp else 'n/a'
        lines.append(f'| {label} | {mean:.2f} | {std:.2f} | {runs} | {delta} |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), required=True)
    parser.add_argument('--rows', nargs='+', choices=list(ROWS), default=list(ROWS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--iters', type=int, help='reconstruction iterations per unit')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'ptq_scenes'))
    parser.add_argument('--out', help='markdown page for the table')
    args = parser.parse_args()
    path = osp.join(args.work_dir, 'results.jsonl')
    records = []
    if osp.isfile(path):
        with open(path) as file:
            records = [json.loads(line) for line in file if line.strip()]
    tool = runpy.run_path(osp.join(ROOT, 'tools', 'ptq.py'))['main']
    load = LoadRecord(allow_loaded=True)
    for row in args.rows:
        for seed in [0] if row in SEEDLESS else args.seeds:
            iters = args.iters if row in ('w4a4-adaround', 'w4a4-unit') else None
            if any(
                (r['task'], r['row'], r['seed'], r.get('iters'))
                == (args.task, row, seed, iters)
                for r in records
            ):
                continue
            record = run_row(tool, args.task, row, seed, iters, args.work_dir)
            records.append(record)
            with open(path, 'a') as file:
                file.write(json.dumps(record) + '\n')
            print(json.dumps(record), flush=True)
    load.stop()
    text = table(records, args.task)
    print(text)
    print(load.markdown())
    if args.out:
        write_block(args.out, f'ptq_scenes_{args.task}', text)


if __name__ == '__main__':
    main()
