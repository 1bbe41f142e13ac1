"""The measuring stages of ``tools/compress.py``: the mixed-precision tables
and allocation (``sensitivity``, ``latency``, ``allocate``) and the FP32 /
int8 comparison (``speed``), each a function of the run's ``Context``."""

import os
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

TOOLS = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, TOOLS)
sys.path.insert(1, osp.join(osp.dirname(TOOLS), 'benchmarks'))  # machine_load
from export_onnx import build_model  # noqa: E402


def fail(message: str) -> None:
    sys.exit(f'compress.py: error: {message}')


def _option_key(option) -> str:
    return 'float' if option is None else str(option)


def _option(key: str):
    return None if key == 'float' else int(key)


def _float_model(ctx):
    """The config's float model with the float checkpoint, in eval mode."""
    from mmengine.runner import load_checkpoint

    model = build_model(Config(ctx.cfg.to_dict()))
    load_checkpoint(model, ctx.checkpoint, map_location='cpu', strict=False)
    return model.eval()


def _float_network(ctx):
    """The float model's network, its quantizable layer names (prefixed as
    in the network) and ``mixed.calib_batches`` preprocessed training batches."""
    import torch

    from mmcompress.quant.export import NetworkWrapper
    from mmcompress.quant.mixed_precision import quantized_layer_names

    cfg = Config(ctx.cfg.to_dict())
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmengine')):
        model = _float_model(ctx)
        layers = quantized_layer_names(model, ctx.recipe.quant.to_dict())
        batches = []
        for batch in Runner.build_dataloader(cfg.train_dataloader, seed=0):
            with torch.no_grad():
                batches.append(model.data_preprocessor(batch, False)['inputs'])
            if len(batches) >= ctx.recipe.mixed.calib_batches:
                break
    return NetworkWrapper(model), ['model.' + n for n in layers], batches


def stage_sensitivity(ctx) -> dict:
    from mmcompress.quant.mixed_precision import output_sensitivity

    network, layers, batches = _float_network(ctx)
    bits = [b for b in ctx.recipe.mixed.options if b is not None]
    table = output_sensitivity(network, batches, layers, options=bits)
    return {
        n[len('model.') :]: {_option_key(b): v for b, v in t.items()}
        for n, t in table.items()
    }


def stage_latency(ctx) -> dict:
    import torch

    from mmcompress.quant.mixed_precision import layer_bops, layer_latency

    network, layers, _ = _float_network(ctx)
    mixed = ctx.recipe.mixed
    example = torch.randn(*ctx.args.shape)
    tables = dict(
        ms=layer_latency(network, example, layers, mixed.options, mixed.runs),
        gbops=layer_bops(network, example, layers, mixed.options),
    )
    if ctx.args.latency_ms is not None:  # the budget's table: inside the graph
        from mmcompress.quant.graph_latency import graph_layer_latency

        names = [n[len('model.') :] for n in layers]
        quant, runs = ctx.recipe.quant.to_dict(), mixed.graph_runs
        graph = graph_layer_latency(
            network.model, example, names, quant, mixed.options, runs
        )
        tables['graph_ms'] = {'model.' + n: t for n, t in graph.items()}
    result = dict(load_average=list(os.getloadavg()))
    for key, table in tables.items():
        result[key] = {
            n[len('model.') :]: {_option_key(o): v for o, v in t.items()}
            for n, t in table.items()
        }
    return result


def stage_speed(ctx) -> dict:
    """The FP32 graph of the float model's network (``WORK/model_fp32.onnx``,
    the export without quantization) against the int8 graph: file sizes and
    onnxruntime latency at ``--shape`` (median of ``speed.runs`` interleaved
    runs on one random input, ``speed.threads`` threads), with the load
    average before and after the timing."""
    import functools

    import torch
    from machine_load import LoadRecord, interleaved_ms

    from mmcompress.quant.export import (
        NetworkWrapper,
        export_onnx,
        onnxruntime_session,
    )

    scope = ctx.cfg.get('default_scope', 'mmengine')
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = NetworkWrapper(_float_model(ctx))
        example = torch.randn(
            *ctx.args.shape, generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            reference = wrapper(example)
        fp32 = export_onnx(
            wrapper,
            example,
            output_names=wrapper.output_names(),
            # as tools/export_onnx.py: dense outputs keep a dynamic size
            dynamic_size=not isinstance(reference, torch.Tensor)
            or reference.dim() == 4,
            quantized=False,
        )
    path = osp.join(ctx.work_dir, 'model_fp32.onnx')
    with open(path, 'wb') as file:
        file.write(fp32)
    with open(ctx.result('export')['onnx'], 'rb') as file:
        int8 = file.read()
    speed, feed = ctx.recipe.speed, {'input': example.numpy()}
    calls = {
        key: functools.partial(onnxruntime_session(blob, speed.threads).run, None, feed)
        for key, blob in (('fp32', fp32), ('int8', int8))
    }
    load = LoadRecord(allow_loaded=True, threads=speed.threads)
    ms = interleaved_ms(calls, speed.runs, speed.warmup)
    load.stop()
    return dict(
        fp32_onnx=path,
        fp32_bytes=len(fp32),
        fp32_ms=ms['fp32'],
        int8_ms=ms['int8'],
        shape=list(ctx.args.shape),
        runs=speed.runs,
        threads=speed.threads,
        load=load.markdown(),
    )


def _budget(args) -> tuple:
    """``(flag, table key, budget)`` of the one budget given."""
    given = [
        (flag, key, value)
        for flag, key, value in (
            ('--latency-ms', 'graph_ms', args.latency_ms),
            ('--gbops', 'gbops', args.gbops),
        )
        if value is not None
    ]
    if len(given) != 1:
        fail(
            f'recipe {args.recipe} allocates bits: pass exactly one budget, '
            f'--latency-ms X or --gbops X (got {len(given)})'
        )
    return given[0]


def stage_allocate(ctx) -> dict:
    from mmcompress.quant.mixed_precision import allocate_bits

    flag, key, budget = _budget(ctx.args)
    quantity, unit = dict(graph_ms=('latency', 'ms'), gbops=('BOPs', 'GBOPs'))[key]
    cost = _decode(ctx.result('latency')[key])
    sensitivity = _decode(ctx.result('sensitivity'))
    for name in cost:
        sensitivity[name].setdefault(None, 0.0)  # float costs nothing
    try:
        allocation = allocate_bits(
            sensitivity, cost, budget, quantity=quantity, unit=unit
        )
    except ValueError as error:
        fail(f'{flag} {budget:g}: {error}')
    if all(b is None for b in allocation.values()):
        fail(
            f'{flag} {budget:g}: the least sensitive allocation within the budget '
            'keeps every layer float, nothing to quantize (per-layer table in '
            f'{ctx.work_dir}/latency/result.json); give a smaller budget'
        )
    return dict(
        budget=[flag, budget],
        cost={key: sum(cost[n][b] for n, b in allocation.items())},
        sensitivity=sum(sensitivity[n][b] for n, b in allocation.items()),
        allocation={n: _option_key(b) for n, b in allocation.items()},
    )


def _decode(table: dict) -> dict:
    return {n: {_option(k): v for k, v in t.items()} for n, t in table.items()}


def _speed_line(exported: dict, speed: dict) -> str:
    shape = 'x'.join(map(str, speed['shape']))
    return (
        f'\n| onnxruntime at {shape}, {speed["threads"]} thread(s) | FP32 | int8 '
        '| FP32 / int8 |\n|---|---|---|---|\n'
        f'| size (bytes) | {speed["fp32_bytes"]} | {exported["bytes"]} '
        f'| {speed["fp32_bytes"] / exported["bytes"]:.2f}x |\n'
        f'| latency (ms, median of {speed["runs"]} interleaved runs) '
        f'| {speed["fp32_ms"]:.3f} | {speed["int8_ms"]:.3f} '
        f'| {speed["fp32_ms"] / speed["int8_ms"]:.2f}x |\n\n{speed["load"]}'
    )


def check_budget(ctx) -> None:
    """A rerun must not reuse an allocation made for another budget."""
    allocated = ctx.result('allocate')
    if allocated:
        flag, _, budget = _budget(ctx.args)
        if allocated['budget'] != [flag, budget]:
            fail(
                f'{ctx.work_dir}/allocate holds the allocation for '
                f'{" ".join(map(str, allocated["budget"]))}, not {flag} {budget}: '
                'use another --work-dir (or delete that folder and the later stages)'
            )
