"""Graph breaks of one training-mode forward of the Fashion-MNIST QAT configs
under ``torch.compile`` (``torch._dynamo.explain``), after the first batch has
initialized the quantizers.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_breaks.py \\
        lsq_w4a4_fmnist ewgs_w4a4_fmnist daq_w4a4_fmnist

Prints a markdown table (config, graphs, graph breaks). For the reasons, run
with ``TORCH_LOGS=graph_breaks`` (``explain`` of torch 2.13 leaves its
``break_reasons`` empty).

``--compiled-init`` instead compiles the model before its first batch (the
quantizers then initialize inside the compiled call) and counts the compiled
regions that a later training-mode forward runs (``torch.profiler``; one when
the model compiled into one graph, ``backend='aot_eager'``).
"""

import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.profiler import ProfilerActivity, profile

import mmcompress  # noqa: F401  (registers the quantized model)
from mmcompress.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs', 'quant', 'mmpretrain')


def explain(name: str, batch: int = 4):
    """Build ``configs/quant/mmpretrain/<name>.py``, run one eager training
    forward (initialization), then explain the next one.

    Returns:
        tuple: (graph count, graph break count).
    """
    cfg = Config.fromfile(osp.join(CONFIGS, f'{name}.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).train()
    x = torch.randn(batch, 1, 28, 28)
    model(x, mode='tensor')
    torch._dynamo.reset()
    result = torch._dynamo.explain(model)(x, mode='tensor')
    return result.graph_count, result.graph_break_count


def compiled_regions(name: str, batch: int = 4) -> int:
    """Build ``configs/quant/mmpretrain/<name>.py``, compile it before the
    first batch, run two training forwards (initialization, then the
    recompiled one) and count the compiled regions of a third.

    Returns:
        int: ``Torch-Compiled Region`` events of the third forward.
    """
    cfg = Config.fromfile(osp.join(CONFIGS, f'{name}.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).train()
    x = torch.randn(batch, 1, 28, 28)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend='aot_eager')
    for _ in range(2):
        compiled(x, mode='tensor')
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        compiled(x, mode='tensor')
    return sum(e.name.startswith('Torch-Compiled Region') for e in prof.events())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', help='config names (no .py)')
    parser.add_argument(
        '--compiled-init',
        action='store_true',
        help='compile before the first batch; count the compiled regions',
    )
    args = parser.parse_args()
    if args.compiled_init:
        print('| config (compiled before initialization) | compiled regions |')
        print('|---|---|')
        for name in args.configs:
            print(f'| {name}.py | {compiled_regions(name)} |')
        return
    print('| config | graphs | graph breaks |')
    print('|---|---|---|')
    for name in args.configs:
        graphs, breaks = explain(name)
        print(f'| {name}.py | {graphs} | {breaks} |')


if __name__ == '__main__':
    main()
