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
``mixed``, and (the ``speed`` stage) the ONNX sizes and onnxruntime latencies
of the float model's FP32 graph and the int8 graph with the load average.

Each stage is a short function of the shared ``Context``; the measuring
stages (``sensitivity``, ``latency``, ``allocate``, ``speed``) live in
``tools/compress_measure.py``.
"""

import argparse
import glob
import json
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmcompress  # noqa: F401  (compatibility fixes and registration first)

TOOLS = osp.dirname(osp.abspath(__file__))
RECIPES = osp.join(osp.dirname(TOOLS), 'configs', 'compress', '_base_')
sys.path.insert(0, TOOLS)
from compress_measure import (  # noqa: E402
    _option,
    _speed_line,
    check_budget,
    fail,
    stage_allocate,
    stage_latency,
    stage_sensitivity,
    stage_speed,
)
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
