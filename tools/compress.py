"""From a float config and checkpoint to an int8 onnxruntime model, in one
command, stage by stage, with a final table.

    python tools/compress.py CONFIG CHECKPOINT --recipe qat-int8 --work-dir WORK \\
        [--shape 1 3 H W] [--qat-options KEY=VALUE ...] [--cfg-options ...]

Recipes are configs in ``configs/compress/_base_/<recipe>.py`` (``qat-int8``:
W8A8 LSQ QAT; ``qat-w4a4``: 4-bit weights and inputs), each listing its
stages. Every stage writes ``WORK/<stage>/result.json`` when it completes; a
second run skips completed stages (resume after an interruption, or delete a
stage's folder to redo it). Each stage is the in-process equivalent of a stock
tool command, printed as it starts:

* ``float_test``: ``tools/test.py CONFIG CHECKPOINT``;
* ``qat``: ``tools/train.py WORK/qat/config.py`` (the config's model wrapped
  in ``QuantizedModel`` with the recipe's quantizers, ``load_from`` the float
  checkpoint, ``--qat-options`` applied);
* ``qat_test``: ``tools/test.py WORK/qat/config.py WORK/qat/<last ckpt>``;
* ``export``: ``tools/export_onnx.py ... --out WORK/model_int8.onnx``;
* ``onnx_test``: ``tools/test_onnx.py WORK/qat/config.py WORK/model_int8.onnx``.

The table (also ``WORK/summary.json``): the metrics of the float model, the
PyTorch QAT model and the onnxruntime int8 model, and the ONNX file size.
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
from export_onnx import main as export_main  # noqa: E402
from test_onnx import ort_config  # noqa: E402


def recipes() -> list:
    """Recipe names (``qat-int8``...) of ``configs/compress/_base_``."""
    return sorted(
        osp.basename(p)[:-3].replace('_', '-')
        for p in glob.glob(osp.join(RECIPES, '*.py'))
    )


def load_recipe(name: str) -> Config:
    """The recipe config; an unknown name or stage is an error listing the
    valid ones."""
    if name not in recipes():
        fail(f'--recipe {name}: no such recipe; valid: {", ".join(recipes())}')
    recipe = Config.fromfile(osp.join(RECIPES, name.replace('-', '_') + '.py'))
    unknown = [s for s in recipe.stages if s not in STAGES]
    if unknown:
        fail(
            f'recipe {name} names stages {unknown} that tools/compress.py does '
            f'not have; valid stages: {", ".join(STAGES)}'
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


def stage_qat(ctx) -> dict:
    cfg = ctx.qat_config()
    cfg.work_dir = ctx.dir('qat')
    cfg.load_from, cfg.resume = ctx.checkpoint, False
    Runner.from_cfg(cfg).train()
    with open(osp.join(cfg.work_dir, 'last_checkpoint')) as file:
        return dict(checkpoint=file.read().strip())


def stage_qat_test(ctx) -> dict:
    checkpoint = ctx.result('qat')['checkpoint']
    return dict(metrics=_test(ctx.qat_config(), checkpoint, ctx.dir('qat_test')))


def stage_export(ctx) -> dict:
    out = osp.join(ctx.work_dir, 'model_int8.onnx')
    args = [ctx.qat_config_path, ctx.result('qat')['checkpoint'], '--out', out]
    export_main(args + ['--shape', *map(str, ctx.args.shape)])
    return dict(onnx=out, bytes=osp.getsize(out))


def stage_onnx_test(ctx) -> dict:
    cfg = ort_config(ctx.qat_config(), ctx.result('export')['onnx'])
    cfg.work_dir = ctx.dir('onnx_test')
    return dict(metrics=_metrics(Runner.from_cfg(cfg).test()))


STAGES = dict(
    float_test=stage_float_test,
    qat=stage_qat,
    qat_test=stage_qat_test,
    export=stage_export,
    onnx_test=stage_onnx_test,
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
        self.qat_config_path = osp.join(self.work_dir, 'qat', 'config.py')

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

    def qat_config(self) -> Config:
        if not osp.isfile(self.qat_config_path):
            cfg = Config(self.cfg.to_dict())
            model = cfg.model
            if cfg.get('data_preprocessor') is not None:
                model.setdefault('data_preprocessor', cfg.pop('data_preprocessor'))
            cfg.model = dict(
                type='QuantizedModel', model=model, quant=self.recipe.quant.to_dict()
            )
            if self.args.qat_options:
                cfg.merge_from_dict(self.args.qat_options)
            self.dir('qat')
            cfg.dump(self.qat_config_path)
        return Config.fromfile(self.qat_config_path)


def table(ctx) -> str:
    rows = [('float (PyTorch)', 'float_test'), ('QAT (PyTorch)', 'qat_test')]
    rows.append(('int8 (onnxruntime)', 'onnx_test'))
    keys = sorted(
        {k for _, s in rows for k in (ctx.result(s) or {}).get('metrics', {})}
    )
    lines = ['| model | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 1) + '|']
    for label, stage in rows:
        metrics = (ctx.result(stage) or {}).get('metrics', {})
        cells = [f'{metrics[k]:.4g}' if k in metrics else '-' for k in keys]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    exported = ctx.result('export')
    if exported:
        lines.append(f'\nONNX: {exported["onnx"]} ({exported["bytes"]} bytes)')
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Compress a model in stages')
    parser.add_argument('config', help='the float model config')
    parser.add_argument('checkpoint', help='the float checkpoint')
    parser.add_argument('--recipe', required=True, help='qat-int8, qat-w4a4')
    parser.add_argument('--work-dir', required=True, help='stage outputs go here')
    parser.add_argument('--shape', type=int, nargs='+', default=[1, 3, 224, 224])
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
