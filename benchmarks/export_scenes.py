"""Integer ONNX export of the scenes detector / segmentor / pose model: stock
metric of the onnxruntime int8 model vs the PyTorch QAT model, and its speed
vs the onnxruntime FP32 model at batch 1.

For each ``--case TASK CONFIG CHECKPOINT`` (a W8A8 QAT config and checkpoint):

1. the PyTorch QAT model's metric on the config's test split (mmengine
   ``Runner.test``, as the stock ``tools/test.py``);
2. ``tools/export_onnx.py``'s default export (the integer graph) evaluated
   by :class:`~mmcompress.quant.export.ORTModel` with the same metric
   (``tools/test_onnx.py``);
3. latency at batch 1, 1 thread: the int8 graph and the FP32 graph of the
   same network (the float model with the checkpoint's weights), sessions
   with all graph optimizations, median of ``--runs`` interleaved runs in
   one process, on one preprocessed test image.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/export_scenes.py \\
        --case pose CONFIG CKPT [--case det CONFIG CKPT ...] [--allow-loaded] \\
        [--runs 30 | --runs 0] [--out docs/quant/export.md [--block NAME]]

``--runs 0`` measures the metrics only (the latency cells read "not
measured"), for a machine too busy to time.

With ``--out`` the table replaces the block ``export_scenes`` of that page.
"""

import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint

import mmcompress  # noqa: F401
from mmcompress.quant.export import NetworkWrapper, export_onnx, onnxruntime_session

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(osp.dirname(HERE), 'tools'))
from doc_blocks import write_block  # noqa: E402
from export_onnx import main as export_main  # noqa: E402
from machine_load import LoadRecord, add_load_argument  # noqa: E402
from test_onnx import ort_config  # noqa: E402

METRICS = dict(det='coco/bbox_mAP', seg='mIoU', pose='coco/AP')


def _metric(task, metrics):
    value = float(metrics[METRICS[task]])
    return value * 100 if task != 'seg' else value  # mmseg reports percent


def pytorch_metric(task, config, checkpoint, work_dir):
    cfg = Config.fromfile(config)
    cfg.load_from, cfg.work_dir = checkpoint, work_dir
    return _metric(task, Runner.from_cfg(cfg).test())


def onnx_metric(task, config, onnx, work_dir):
    cfg = ort_config(Config.fromfile(config), onnx)
    cfg.work_dir = work_dir
    return _metric(task, Runner.from_cfg(cfg).test())


def latency(config, checkpoint, int8_path, runs):
    """Median seconds at batch 1 of the int8 graph and the FP32 graph."""
    cfg = Config.fromfile(config)
    DefaultScope.get_instance(
        f'bench_{osp.basename(config)}', scope_name=cfg.default_scope
    )
    float_model = MODELS.build(cfg.model.model)
    load_checkpoint(float_model, checkpoint, map_location='cpu', strict=False)
    float_model.eval()
    batch = next(iter(Runner.build_dataloader(cfg.test_dataloader)))
    example = float_model.data_preprocessor(batch, False)['inputs'][:1]
    wrapper = NetworkWrapper(float_model)
    wrapper(example)
    fp32 = export_onnx(
        wrapper,
        example,
        output_names=wrapper.output_names(),
        dynamic_size=True,
        quantized=False,
    )
    with open(int8_path, 'rb') as file:
        int8 = file.read()
    sessions = dict(int8=onnxruntime_session(int8), fp32=onnxruntime_session(fp32))
    feed = {'input': example.numpy()}
    times = {k: [] for k in sessions}
    for i in range(runs + 3):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            if i >= 3:
                times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}, tuple(example.shape)


def run_case(task, config, checkpoint, runs, tmp):
    int8_path = osp.join(tmp, f'{task}_int8.onnx')
    shape = dict(pose=[1, 3, 64, 64]).get(task, [1, 3, 128, 128])
    export_main([config, checkpoint, '--out', int8_path, '--shape', *map(str, shape)])
    row = dict(task=task, config=config, checkpoint=checkpoint, shape=tuple(shape))
    row['pytorch'] = pytorch_metric(task, config, checkpoint, osp.join(tmp, 'pt'))
    row['onnx'] = onnx_metric(task, config, int8_path, osp.join(tmp, 'ort'))
    if runs:
        times, row['shape'] = latency(config, checkpoint, int8_path, runs)
        row['int8_ms'], row['fp32_ms'] = times['int8'] * 1e3, times['fp32'] * 1e3
    return row


def _speed_cells(r) -> str:
    if 'int8_ms' not in r:
        return 'not measured | not measured | not measured'
    return (
        f'{r["fp32_ms"]:.2f} | {r["int8_ms"]:.2f} | {r["fp32_ms"] / r["int8_ms"]:.2f}x'
    )


def table(rows, load, runs):
    lines = [
        '| task | metric | PyTorch QAT | onnxruntime int8 | difference | input '
        '| FP32 ms | int8 ms | speed-up |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f'| {r["task"]} | {METRICS[r["task"]]} | {r["pytorch"]:.2f} | '
            f'{r["onnx"]:.2f} | {r["onnx"] - r["pytorch"]:+.2f} | '
            f'{"x".join(map(str, r["shape"]))} | {_speed_cells(r)} |'
        )
    if runs:
        speed = (
            f'Latency: onnxruntime CPU provider, 1 thread, batch 1, median of '
            f'{runs} interleaved runs. {load.markdown()}'
        )
    else:
        speed = (
            'Latency: not measured on a quiet machine (`--runs 0`); measure it '
            'with the same command and `--runs 30` where the load average stays '
            'below the core count.'
        )
    lines += ['', speed, '']
    lines += ['Checkpoints:', '']
    lines += [f'- {r["task"]}: `{r["config"]}` `{r["checkpoint"]}`' for r in rows]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--case',
        nargs=3,
        action='append',
        required=True,
        metavar=('TASK', 'CONFIG', 'CHECKPOINT'),
    )
    parser.add_argument(
        '--runs', type=int, default=30, help='timed runs; 0: metrics only'
    )
    parser.add_argument('--out', help='docs page whose export_scenes block to write')
    parser.add_argument(
        '--block', default='export_scenes', help='name of the block --out replaces'
    )
    add_load_argument(parser)
    args = parser.parse_args()
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    load = LoadRecord(args.allow_loaded or args.runs == 0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, config, checkpoint in args.case:
            rows.append(run_case(task, config, checkpoint, args.runs, tmp))
    load.stop()
    text = table(rows, load, args.runs)
    print(text)
    if args.out:
        write_block(args.out, args.block, text)


if __name__ == '__main__':
    main()
