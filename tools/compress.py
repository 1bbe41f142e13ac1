"""From a float config and checkpoint to an int8 onnxruntime model, in one
command, stage by stage, with a final table.

    python tools/compress.py CONFIG CHECKPOINT --recipe RECIPE --work-dir WORK \\
        [--shape 1 3 H W] [--teacher CONFIG CKPT] [--latency-ms X | --gbops X] \\
        [--qat-options KEY=VALUE ...] [--cfg-options ...]

Recipes are configs in ``configs/compress/_base_/<recipe>.py`` listing their
stages: ``qat-int8``, ``qat-w4a4``, ``qat-w4a4-kd`` (QAT distilled from
``--teacher``), ``ptq-int8`` (no training) and ``mixed`` (per-layer bits
under a latency or BOPs budget, then QAT). Each stage is the in-process
equivalent of a stock-tool command (``tools/test.py``, ``tools/train.py``,
``tools/ptq.py``, ``tools/export_onnx.py``, ``tools/test_onnx.py``; the
table of docs/deploy.md), writes ``WORK/<stage>/result.json`` when it
completes, and is skipped by a second run (resume after an interruption, or
delete a stage's folder to redo it). The recipe's quantization stage
(``qat``, ``kd_qat`` or ``ptq``) writes the ``QuantizedModel`` config
``WORK/<stage>/config.py`` that the later stages test and export.

The table (also ``WORK/summary.json``): the metrics of the float model, the
PyTorch quantized model and the onnxruntime int8 model, the allocation of
``mixed`` and the ONNX file size.

The file holds the whole stage table (each stage a short function over the
shared ``Context``), so it runs a little over 400 lines: the stages read
best next to the table that orders them.
"""

import argparse
import glob
import json
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import mmcompress  # noqa: F401  (compatibility fixes and registration first)

TOOLS = osp.dirname(osp.abspath(__file__))
RECIPES = osp.join(osp.dirname(TOOLS), 'configs', 'compress', '_base_')
sys.path.insert(0, TOOLS)
sys.path.insert(1, osp.join(osp.dirname(TOOLS), 'benchmarks'))  # machine_load
from export_onnx import build_model  # noqa: E402
from export_onnx import main as export_main  # noqa: E402
from ptq import main as ptq_main  # noqa: E402
from test_onnx import ort_config  # noqa: E402

#: Stages that make the quantized checkpoint; a recipe has exactly one.
QUANTIZE_STAGES = ('qat', 'kd_qat', 'ptq')
#: Table labels of the quantized model per quantization stage.
LABELS = dict(qat='QAT (PyTorch)', kd_qat='QAT + KD (PyTorch)', ptq='PTQ (PyTorch)')


def recipes() -> list:
    """Recipe names (``qat-int8``...) of ``configs/compress/_base_``."""
    return sorted(
        osp.basename(p)[:-3].replace('_', '-')
        for p in glob.glob(osp.join(RECIPES, '*.py'))
    )


def load_recipe(name: str) -> Config:
    """The recipe config; an unknown name or stage, or a recipe without
    exactly one quantization stage, is an error listing the valid ones."""
    if name not in recipes():
        fail(f'--recipe {name}: no such recipe; valid: {", ".join(recipes())}')
    recipe = Config.fromfile(osp.join(RECIPES, name.replace('-', '_') + '.py'))
    unknown = [s for s in recipe.stages if s not in STAGES]
    if unknown:
        fail(
            f'recipe {name} names stages {unknown} that tools/compress.py does '
            f'not have; valid stages: {", ".join(STAGES)}'
        )
    quantize = [s for s in recipe.stages if s in QUANTIZE_STAGES]
    if len(quantize) != 1:
        fail(
            f'recipe {name} has quantization stages {quantize}; it needs exactly '
            f'one of {", ".join(QUANTIZE_STAGES)}'
        )
    return recipe


def fail(message: str) -> None:
    sys.exit(f'compress.py: error: {message}')


def _metrics(runner_metrics) -> dict:
    return {k: float(v) for k, v in runner_metrics.items()}


def _test(cfg: Config, checkpoint, work_dir: str) -> dict:
    cfg = Config(cfg.to_dict())
    cfg.load_from, cfg.resume, cfg.work_dir = checkpoint, False, work_dir
    return _metrics(Runner.from_cfg(cfg).test())


def stage_float_test(ctx) -> dict:
    return dict(metrics=_test(ctx.cfg, ctx.checkpoint, ctx.dir('float_test')))


def _last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as file:
        return file.read().strip()


def stage_qat(ctx) -> dict:
    cfg = ctx.quant_config()
    cfg.work_dir = ctx.dir('qat')
    cfg.load_from, cfg.resume = ctx.checkpoint, False
    Runner.from_cfg(cfg).train()
    return dict(checkpoint=_last_checkpoint(cfg.work_dir))


def stage_kd_qat(ctx) -> dict:
    from mmcompress.distill.student_checkpoint import student_checkpoint_path

    if not ctx.args.teacher:
        fail(f'recipe {ctx.args.recipe} distils: pass --teacher CONFIG CHECKPOINT')
    work_dir = ctx.dir('kd_qat')
    # the runner dumps its config under its file name: not over config.py
    path = osp.join(work_dir, 'train_config.py')
    cfg = Config(ctx.quant_config().to_dict())
    teacher = dict(config=osp.abspath(ctx.args.teacher[0]))
    teacher['checkpoint'] = osp.abspath(ctx.args.teacher[1])
    cfg.model = dict(
        type='DistillModel',
        student=cfg.model,
        teacher=teacher,
        input_shape=tuple(ctx.args.shape[1:]),
        distill=ctx.recipe.distill.to_dict(),
    )
    cfg.work_dir, cfg.load_from, cfg.resume = work_dir, ctx.checkpoint, False
    cfg.dump(path)
    Runner.from_cfg(Config.fromfile(path)).train()
    return dict(checkpoint=student_checkpoint_path(_last_checkpoint(work_dir)))


def stage_ptq(ctx) -> dict:
    ctx.quant_config()  # written to ctx.quant_config_path
    out = osp.join(ctx.dir('ptq'), 'ptq.pth')
    args = [ctx.quant_config_path, ctx.checkpoint, '--out', out, '--no-progress']
    ptq_main(args + ['--work-dir', ctx.dir('ptq')])
    return dict(checkpoint=out)


def stage_quant_test(ctx) -> dict:
    work_dir = ctx.dir(ctx.quant_stage[-3:] + '_test')
    return dict(metrics=_test(ctx.quant_config(), ctx.quantized_checkpoint(), work_dir))


def stage_export(ctx) -> dict:
    out = osp.join(ctx.work_dir, 'model_int8.onnx')
    args = [ctx.quant_config_path, ctx.quantized_checkpoint(), '--out', out]
    export_main(args + ['--shape', *map(str, ctx.args.shape)])
    return dict(onnx=out, bytes=osp.getsize(out))


def stage_onnx_test(ctx) -> dict:
    cfg = ort_config(ctx.quant_config(), ctx.result('export')['onnx'])
    cfg.work_dir = ctx.dir('onnx_test')
    return dict(metrics=_metrics(Runner.from_cfg(cfg).test()))


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


STAGES = dict(
    float_test=stage_float_test,
    sensitivity=stage_sensitivity,
    latency=stage_latency,
    allocate=stage_allocate,
    qat=stage_qat,
    kd_qat=stage_kd_qat,
    ptq=stage_ptq,
    qat_test=stage_quant_test,
    ptq_test=stage_quant_test,
    export=stage_export,
    onnx_test=stage_onnx_test,
    speed=stage_speed,
)


class Context:
    """The run's paths, configs and completed stage results."""

    def __init__(self, args, recipe: Config) -> None:
        self.args, self.recipe = args, recipe
        self.work_dir = osp.abspath(args.work_dir)
        self.checkpoint = args.checkpoint
        self.cfg = Config.fromfile(args.config)
        if args.cfg_options:
            self.cfg.merge_from_dict(args.cfg_options)
        self.quant_stage = next(s for s in recipe.stages if s in QUANTIZE_STAGES)
        self.quant_config_path = osp.join(self.work_dir, self.quant_stage, 'config.py')

    def dir(self, stage: str) -> str:
        path = osp.join(self.work_dir, stage)
        os.makedirs(path, exist_ok=True)
        return path

    def result(self, stage: str):
        path = osp.join(self.work_dir, stage, 'result.json')
        if not osp.isfile(path):
            return None
        with open(path) as file:
            return json.load(file)

    def quantized_checkpoint(self) -> str:
        return self.result(self.quant_stage)['checkpoint']

    def quant_config(self) -> Config:
        """The ``QuantizedModel`` config (written once, then read back)."""
        if not osp.isfile(self.quant_config_path):
            cfg = Config(self.cfg.to_dict())
            model = cfg.model
            if cfg.get('data_preprocessor') is not None:
                model.setdefault('data_preprocessor', cfg.pop('data_preprocessor'))
            quant = self.recipe.quant.to_dict()
            allocated = self.result('allocate')
            if allocated is not None:
                from mmcompress.quant.mixed_precision import layer_overrides

                allocation = {n: _option(b) for n, b in allocated['allocation'].items()}
                default_bits = quant['w']['bits']
                quant['layer_overrides'] = layer_overrides(allocation, default_bits)
            cfg.model = dict(type='QuantizedModel', model=model, quant=quant)
            if 'ptq' in self.recipe:
                cfg.ptq = self.recipe.ptq.to_dict()
            if self.args.qat_options:
                cfg.merge_from_dict(self.args.qat_options)
            self.dir(self.quant_stage)
            cfg.dump(self.quant_config_path)
        return Config.fromfile(self.quant_config_path)


def table(ctx) -> str:
    rows = [('float (PyTorch)', 'float_test')]
    rows.append((LABELS[ctx.quant_stage], f'{ctx.quant_stage[-3:]}_test'))
    rows.append(('int8 (onnxruntime)', 'onnx_test'))
    keys = sorted(
        {k for _, s in rows for k in (ctx.result(s) or {}).get('metrics', {})}
    )
    lines = ['| model | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 1) + '|']
    for label, stage in rows:
        metrics = (ctx.result(stage) or {}).get('metrics', {})
        cells = [f'{metrics[k]:.4g}' if k in metrics else '-' for k in keys]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    allocated = ctx.result('allocate')
    if allocated:
        counts = {}
        for bits in allocated['allocation'].values():
            counts[bits] = counts.get(bits, 0) + 1
        (key, used), (flag, budget) = *allocated['cost'].items(), allocated['budget']
        lines.append(
            f'\nLayers per bit width ({used:.4g} {key} of {flag} {budget:g} in the '
            'per-layer table): '
            + ', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))
        )
    exported, speed = ctx.result('export'), ctx.result('speed')
    if exported:
        lines.append(f'\nONNX: {exported["onnx"]} ({exported["bytes"]} bytes)')
    if speed:
        lines.append(_speed_line(exported, speed))
    return '\n'.join(lines)


def _speed_line(exported: dict, speed: dict) -> str:
    shape = 'x'.join(map(str, speed['shape']))
    return (
        f'\n| onnxruntime at {shape}, {speed["threads"]} thread(s) | FP32 | int8 '
        '| ratio |\n|---|---|---|---|\n'
        f'| size (bytes) | {speed["fp32_bytes"]} | {exported["bytes"]} '
        f'| {speed["fp32_bytes"] / exported["bytes"]:.2f}x smaller |\n'
        f'| latency (ms, median of {speed["runs"]} interleaved runs) '
        f'| {speed["fp32_ms"]:.3f} | {speed["int8_ms"]:.3f} '
        f'| {speed["fp32_ms"] / speed["int8_ms"]:.2f}x faster |\n\n{speed["load"]}'
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Compress a model in stages')
    parser.add_argument('config', help='the float model config')
    parser.add_argument('checkpoint', help='the float checkpoint')
    parser.add_argument('--recipe', required=True, help=', '.join(recipes()))
    parser.add_argument('--work-dir', required=True, help='stage outputs go here')
    parser.add_argument('--shape', type=int, nargs='+', default=[1, 3, 224, 224])
    parser.add_argument(
        '--teacher', nargs=2, metavar=('CONFIG', 'CKPT'), help='kd recipes: teacher'
    )
    parser.add_argument(
        '--latency-ms', type=float, help='mixed: latency budget of the layers'
    )
    parser.add_argument('--gbops', type=float, help='mixed: BOPs budget (10^9)')
    parser.add_argument(
        '--qat-options', nargs='+', action=DictAction, help='QAT stage overrides'
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='config overrides'
    )
    return parser


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


def main(argv=None) -> str:
    args = build_parser().parse_args(argv)
    recipe = load_recipe(args.recipe)
    ctx = Context(args, recipe)
    check_budget(ctx)
    for index, stage in enumerate(recipe.stages, 1):
        done = ctx.result(stage)
        status = 'done, skipped' if done is not None else 'running'
        print(f'[compress {index}/{len(recipe.stages)}] {stage}: {status}', flush=True)
        if done is None:
            result = STAGES[stage](ctx)
            with open(osp.join(ctx.dir(stage), 'result.json'), 'w') as file:
                json.dump(result, file)
    text = table(ctx)
    with open(osp.join(ctx.work_dir, 'summary.json'), 'w') as file:
        json.dump({s: ctx.result(s) for s in recipe.stages}, file, indent=1)
    print(text)
    return text


if __name__ == '__main__':
    main()
