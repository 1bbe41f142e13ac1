"""Speed of the integer ONNX export on model-zoo-size detector, segmentor and
pose model: onnxruntime int8 graph vs onnxruntime FP32 graph, batch 1, one
thread. Speed only: the weights are random.

Each case builds the network of a stock downstream config
(``mmdet::`` / ``mmseg::`` / ``mmpose::``, SyncBN as BN, without mmseg's
training-only auxiliary head) twice: float, and
wrapped in the W8A8 QAT recipe of the matching scenes config
(``QuantizedModel`` with its ``quant`` dict: LSQ 8-bit weights and inputs,
stem and prediction convs float). The float model keeps PyTorch's default
initialisation; one training-mode pass on a random input sets its BN
statistics; the quantized model takes the float weights and statistics, and
a second pass (BNs frozen) sets its quantizer grids. Then:

* FP32: ``export_onnx(quantized=False)`` of the float network;
* int8: ``export_onnx`` of the quantized network, then
  ``optimize_for_onnxruntime`` (the default ``tools/export_onnx.py`` graph;
  the calibrated grids from the same random input);

both with dynamic height and width (as ``tools/export_onnx.py`` writes
dense outputs), timed in one process: onnxruntime CPU provider, 1 thread,
all graph optimizations, denormals flushed in both sessions, ``--warmup``
runs then the median of ``--runs`` interleaved runs on one random input.
The table also counts the convs onnxruntime runs as ``QLinearConv`` and as
float ``Conv`` in the int8 graph.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/export_speed.py [--case det seg pose] \\
        [--runs 10] [--allow-loaded] [--out docs/quant/export.md]

Without ``--allow-loaded`` it refuses to time on a machine whose load average
is above its core count, and marks the table when the load rose above it
during the run (``machine_load.py``). With ``--out`` the table replaces the
block ``export_speed`` of that page.
"""

import argparse
import copy
import functools
import os
import os.path as osp
import sys
import tempfile
import time

import torch
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant.export import (
    NetworkWrapper,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
sys.path.insert(0, HERE)
from doc_blocks import write_block  # noqa: E402
from machine_load import LoadRecord, add_load_argument, interleaved_ms  # noqa: E402

# task -> (stock config, scenes W8A8 recipe whose quant dict is applied, input)
CASES = dict(
    det=(
        'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        'configs/quant/mmdet/lsq_w8a8_retinanet_r18-w16_scenes.py',
        (1, 3, 512, 512),
    ),
    seg=(
        'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py',
        'configs/quant/mmseg/lsq_w8a8_fcn_r18-w16_scenes.py',
        (1, 3, 512, 512),
    ),
    pose=(
        'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
        'td-hm_res50_8xb64-210e_coco-256x192.py',
        'configs/quant/mmpose/lsq_w8a8_topdown_heatmap_r18-w16_scenes.py',
        (1, 3, 256, 192),
    ),
)


def _plain_bn(cfg):
    """The config with every ``SyncBN`` as ``BN`` (one CPU process)."""
    if isinstance(cfg, dict):
        return ConfigDict(
            {
                k: ('BN' if k == 'type' and v == 'SyncBN' else _plain_bn(v))
                for k, v in cfg.items()
            }
        )
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_plain_bn(v) for v in cfg)
    return cfg


def _set_statistics(model, x, freeze: bool) -> None:
    """One training-mode pass of the network on ``x``: BN statistics of
    this input (momentum 1), or, with ``freeze``, BNs kept as they are
    (the quantizers initialise). Every module trains, the stages a config
    freezes (``frozen_stages``, ``norm_eval``) too."""
    wrapper = NetworkWrapper(model)  # (sets the model's own train mode)
    for module in model.modules():
        module.training = True
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.training = not freeze
            module.momentum = 1.0
    with torch.no_grad():
        wrapper(x)
    model.eval()


def build_models(task: str, x: torch.Tensor) -> tuple:
    """The task's float network and its W8A8 QAT form with the same weights
    and BN statistics, quantizer grids set on ``x`` (module docstring)."""
    zoo, recipe, _ = CASES[task]
    cfg = get_config(zoo)
    model_cfg = _plain_bn(cfg.model)
    model_cfg.pop('auxiliary_head', None)  # training only, not exported
    quant_cfg = Config.fromfile(osp.join(REPO, recipe)).model.to_dict()
    quant_cfg['model'] = copy.deepcopy(model_cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        float_model = MODELS.build(model_cfg)
        _set_statistics(float_model, x, freeze=False)
        quantized = MODELS.build(quant_cfg)
    quantized.load_state_dict(float_model.state_dict(), strict=False)
    _set_statistics(quantized, x, freeze=True)
    return float_model, quantized


def build_graphs(float_model, quantized, x: torch.Tensor) -> dict:
    """FP32 and int8 ONNX bytes of the two networks (module docstring)."""
    graphs = {}
    for key, model in (('fp32', float_model), ('int8', quantized)):
        wrapper = NetworkWrapper(model)
        with torch.no_grad():
            wrapper(x)
        graphs[key] = export_onnx(
            wrapper,
            x,
            output_names=wrapper.output_names(),
            dynamic_size=True,
            quantized=key == 'int8',
        )
    graphs['int8'] = optimize_for_onnxruntime(graphs['int8'], [x])
    return graphs


def conv_kernels(blob: bytes) -> dict:
    """How many convs onnxruntime runs as ``QLinearConv`` and in float."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.optimized_model_filepath = osp.join(tmp, 'optimized.onnx')
        ort.InferenceSession(blob, options, providers=['CPUExecutionProvider'])
        ops = [
            n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node
        ]
    floats = ('Conv', 'FusedConv', 'NchwcConv', 'ConvTranspose')
    return dict(
        integer=ops.count('QLinearConv'), float=sum(ops.count(op) for op in floats)
    )


def interleaved_medians(sessions: dict, feed: dict, runs: int, warmup: int) -> dict:
    """Median seconds per session over ``runs`` interleaved runs (after
    ``warmup`` untimed rounds)."""
    ms = interleaved_ms(
        {key: functools.partial(s.run, None, feed) for key, s in sessions.items()},
        runs,
        warmup,
    )
    return {key: value / 1000 for key, value in ms.items()}


def run_case(task: str, runs: int, warmup: int) -> dict:
    zoo, recipe, shape = CASES[task]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    graphs = build_graphs(*build_models(task, x), x)
    built = time.perf_counter() - start
    sessions = {
        k: onnxruntime_session(v, threads=1, flush_denormals=True)
        for k, v in graphs.items()
    }
    medians = interleaved_medians(sessions, {'input': x.numpy()}, runs, warmup)
    row = dict(task=task, config=zoo, recipe=recipe, shape=shape)
    row.update(convs=conv_kernels(graphs['int8']), build_s=built)
    row.update(fp32_ms=medians['fp32'] * 1e3, int8_ms=medians['int8'] * 1e3)
    print(row, file=sys.stderr, flush=True)
    return row


def table(rows: list, load: LoadRecord, runs: int, warmup: int, command: str) -> str:
    import onnxruntime

    lines = [
        '| task | stock config | input | int8 graph: QLinearConv / float convs '
        '| FP32 ms | int8 ms | speed-up |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f'| {r["task"]} | `{r["config"]}` | {"x".join(map(str, r["shape"]))} | '
            f'{r["convs"]["integer"]} / {r["convs"]["float"]} | '
            f'{r["fp32_ms"]:.1f} | {r["int8_ms"]:.1f} | '
            f'{r["fp32_ms"] / r["int8_ms"]:.2f}x |'
        )
    lines += [
        '',
        f'Random weights (speed only): the stock network, SyncBN as BN, in the '
        f'W8A8 recipe of the scenes config of its task (`{rows[0]["recipe"]}` '
        f'and its siblings). onnxruntime {onnxruntime.__version__} CPU '
        f'provider, 1 thread, batch 1, denormals flushed in both sessions, '
        f'median of {runs} interleaved runs after {warmup} warm-up runs. '
        f'{load.markdown()}',
        '',
        f'Reproduce: `{command}`',
    ]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--case', nargs='+', choices=list(CASES), default=list(CASES), metavar='TASK'
    )
    parser.add_argument('--runs', type=int, default=10, help='timed runs per graph')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first')
    parser.add_argument('--out', help='docs page whose export_speed block to write')
    add_load_argument(parser)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f'--runs must be at least 1, got {args.runs}')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    torch.set_num_threads(1)
    load = LoadRecord(args.allow_loaded)
    rows = [run_case(task, args.runs, args.warmup) for task in args.case]
    load.stop()
    command = 'OMP_NUM_THREADS=1 python benchmarks/export_speed.py ' + ' '.join(
        sys.argv[1:]
    )
    text = table(rows, load, args.runs, args.warmup, command)
    print(text)
    if args.out:
        write_block(args.out, 'export_speed', text)


if __name__ == '__main__':
    main()
