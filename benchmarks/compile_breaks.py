"""Graph breaks of one training-mode forward of the Fashion-MNIST QAT configs
under ``torch.compile`` (``torch._dynamo.explain``), after the first batch has
initialized the quantizers.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_breaks.py \\
        lsq_w4a4_fmnist ewgs_w4a4_fmnist daq_w4a4_fmnist

Prints a markdown table (config, graphs, graph breaks). For the reasons, run
with ``TORCH_LOGS=graph_breaks`` (``explain`` of torch 2.13 leaves its
``break_reasons`` empty).
"""

import argparse
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', help='config names (no .py)')
    args = parser.parse_args()
    print('| config | graphs | graph breaks |')
    print('|---|---|---|')
    for name in args.configs:
        graphs, breaks = explain(name)
        print(f'| {name}.py | {graphs} | {breaks} |')


if __name__ == '__main__':
    main()
