"""Cost of Polarized Self-Attention: parameters, FLOPs and CPU latency it adds per
insertion point, and a PSA block's forward+backward time against the plain block.

Usage::

    python benchmarks/psa_cost.py --out docs/models/psa.md       # both tables
    python benchmarks/psa_cost.py --skip-backbones --iters 50    # block table only
    python benchmarks/psa_cost.py --skip-backbones --out docs/models/psa.md

FLOPs are counted by ``mmengine.analysis`` (multiply-adds of convolutions and
matrix products, traced; element-wise ops are not counted). Latencies are medians
of interleaved runs (plain and PSA alternate) in one process, with
``torch.set_flush_denormal(True)``; the 1-minute load average before and after is
recorded because the machine may be shared.
"""

import argparse
import copy
import os
import os.path as osp
import sys
from typing import Dict, List

import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

from doc_blocks import write_block  # noqa: E402
from machine_load import interleaved_ms  # noqa: E402

import mmcompress  # noqa: E402,F401  (registers the PSA classes)
from mmcompress.models.plugins.psa_kernels import (  # noqa: E402
    load_psa_kernels,
    psa_kernel_error,
)
from mmcompress.registry import MODELS  # noqa: E402

PAGE = osp.join(ROOT, 'docs', 'models', 'psa.md')


def psa_plugins(
    mode: str, position: str = 'after_conv1', fused: bool = False
) -> List[dict]:
    cfg = dict(type='PolarizedSelfAttention', mode=mode, fused=fused)
    return [dict(cfg=cfg, position=position)]


def hrnet_extra(width: int) -> dict:
    """The HRNet-W<width> stages of the mmseg / mmpose model zoo."""
    w = [width, 2 * width, 4 * width, 8 * width]
    return dict(
        stage1=dict(
            num_modules=1,
            num_branches=1,
            block='BOTTLENECK',
            num_blocks=(4,),
            num_channels=(64,),
        ),
        stage2=dict(
            num_modules=1,
            num_branches=2,
            block='BASIC',
            num_blocks=(4, 4),
            num_channels=tuple(w[:2]),
        ),
        stage3=dict(
            num_modules=4,
            num_branches=3,
            block='BASIC',
            num_blocks=(4, 4, 4),
            num_channels=tuple(w[:3]),
        ),
        stage4=dict(
            num_modules=3,
            num_branches=4,
            block='BASIC',
            num_blocks=(4, 4, 4, 4),
            num_channels=tuple(w),
        ),
    )


R18_SEG = dict(
    depth=18,
    stem_channels=16,
    base_channels=16,
    deep_stem=True,
    strides=(1, 2, 2, 1),
    dilations=(1, 1, 1, 2),
    contract_dilation=True,
)
R18_POSE = dict(depth=18, base_channels=16, strides=(1, 2, 2, 1), out_indices=(3,))

# name -> (scope, plain backbone cfg, PSA backbone cfg builder, input shape, where)
BACKBONES: Dict[str, tuple] = {
    'scenes seg R-18-w16 (V1c)': (
        'mmseg',
        dict(
            type='ResNetV1c', **{k: v for k, v in R18_SEG.items() if k != 'deep_stem'}
        ),
        lambda mode: dict(type='SegPSAResNet', plugins=psa_plugins(mode), **R18_SEG),
        (1, 3, 128, 128),
        'after conv1 of every BasicBlock',
    ),
    'scenes pose R-18-w16': (
        'mmpose',
        dict(type='ResNet', **R18_POSE),
        lambda mode: dict(type='PosePSAResNet', plugins=psa_plugins(mode), **R18_POSE),
        (1, 3, 64, 64),
        'after conv1 of every BasicBlock',
    ),
    'ResNet-50 (mmseg, stock plugins=)': (
        'mmseg',
        dict(type='ResNet', depth=50),
        lambda mode: dict(
            type='ResNet', depth=50, plugins=psa_plugins(mode, 'after_conv2')
        ),
        (1, 3, 256, 256),
        'after conv2 of every Bottleneck',
    ),
    'HRNet-W32 (mmpose), 256x192': (
        'mmpose',
        dict(type='HRNet', extra=hrnet_extra(32)),
        lambda mode: dict(
            type='PosePSAHRNet', plugins=psa_plugins(mode), extra=hrnet_extra(32)
        ),
        (1, 3, 256, 192),
        'after conv1 of every BasicBlock (official)',
    ),
    'HRNet-W48 (mmseg), 256x512': (
        'mmseg',
        dict(type='HRNet', extra=hrnet_extra(48)),
        lambda mode: dict(
            type='SegPSAHRNet', plugins=psa_plugins(mode), extra=hrnet_extra(48)
        ),
        (1, 3, 256, 512),
        'after conv1 of every BasicBlock (official)',
    ),
}


def build(scope: str, cfg: dict) -> torch.nn.Module:
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(copy.deepcopy(cfg))
    return model


def backbone_rows(iters: int, warmup: int) -> List[dict]:
    rows = []
    for name, (scope, plain_cfg, psa_cfg, shape, where) in BACKBONES.items():
        torch.manual_seed(0)
        models = dict(
            plain=build(scope, plain_cfg),
            p=build(scope, psa_cfg('parallel')),
            s=build(scope, psa_cfg('sequential')),
        )
        x = torch.randn(shape)
        info = {}
        for key, model in models.items():
            model.eval()
            stats = get_model_complexity_info(
                model, inputs=(x,), show_table=False, show_arch=False
            )
            info[key] = (stats['params'], stats['flops'])

        def forward(model, x=x):
            def run():
                with torch.no_grad():
                    model(x)

            return run

        ms = interleaved_ms({k: forward(m) for k, m in models.items()}, iters, warmup)
        for key in ('p', 's'):
            rows.append(
                dict(
                    backbone=name,
                    where=where,
                    psa=f'PSA_{key}',
                    input='x'.join(map(str, shape)),
                    params_m=info[key][0] / 1e6,
                    d_params=info[key][0] / info['plain'][0] - 1,
                    gflops=info[key][1] / 1e9,
                    d_flops=info[key][1] / info['plain'][1] - 1,
                    plain_ms=ms['plain'],
                    ms=ms[key],
                    d_ms=ms[key] / ms['plain'] - 1,
                )
            )
            print(rows[-1], flush=True)
    return rows


# name -> (channels, height, width, batch)
BLOCK_CASES = {
    'scenes pose R-18-w16 stage 1': (16, 16, 16, 32),
    'HRNet-W32 branch 1, 256x192': (32, 64, 48, 8),
    'ResNet-18 layer 1, 224x224': (64, 56, 56, 8),
    'HRNet-W48 branch 4, 512x1024': (384, 16, 32, 2),
}


def block_rows(iters: int, warmup: int) -> List[dict]:
    from mmseg.models.backbones.resnet import BasicBlock

    from mmcompress.models.backbones.psa_seg import SegPluginBasicBlock

    rows = []
    for name, (c, h, w, n) in BLOCK_CASES.items():
        torch.manual_seed(0)
        blocks = dict(plain=BasicBlock(c, c))
        for key, mode in (('p', 'parallel'), ('s', 'sequential')):
            blocks[key] = SegPluginBasicBlock(c, c, plugins=psa_plugins(mode))
            blocks[key + '_fused'] = copy.deepcopy(blocks[key])
            blocks[key + '_fused'].psa.fused = True
        x = torch.randn(n, c, h, w)
        grad = torch.randn(n, c, h, w)

        def step(block, x=x, grad=grad):
            def run():
                block.zero_grad(set_to_none=True)
                block(x).backward(grad)

            return run

        ms = interleaved_ms({k: step(b) for k, b in blocks.items()}, iters, warmup)
        for key in ('p', 's'):
            rows.append(
                dict(
                    case=name,
                    shape=f'{n}x{c}x{h}x{w}',
                    psa=f'PSA_{key}',
                    plain_ms=ms['plain'],
                    ms=ms[key],
                    ratio=ms[key] / ms['plain'],
                    fused_ms=ms[key + '_fused'],
                    fused_ratio=ms[key + '_fused'] / ms['plain'],
                )
            )
            print(rows[-1], flush=True)
    return rows


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--skip-backbones', action='store_true')
    parser.add_argument('--out', help='markdown page for the tables')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    cmd = (
        'python benchmarks/psa_cost.py'
        + f' --iters {args.iters} --threads {args.threads}'
        + (' --skip-backbones' if args.skip_backbones else '')
        + (f' --out {osp.relpath(args.out, ROOT)}' if args.out else '')
    )
    device = f'CPU ({torch.get_num_threads()} thread(s))'
    if load_psa_kernels() is None:  # the fused column would time the eager path
        raise RuntimeError(f'the PSA kernels do not build: {psa_kernel_error()}')
    load_before = load_average()
    blocks = block_rows(args.iters, args.warmup)
    load_blocks = load_average()
    lines = [
        f'Command: `{cmd}`; {device}, torch {torch.__version__}; 1-minute load '
        f'average {load_before:.2f} before, {load_blocks:.2f} after. '
        'mmseg BasicBlock with / without PSA after conv1, forward + backward '
        'on the same input, medians of interleaved runs; PSA eager '
        '(`fused=False`, the default) and on the fused CPU kernels '
        '(`fused=True`).',
        '',
        '| block input | PSA | plain (ms) | with PSA (ms) | ratio | '
        'with PSA, fused (ms) | ratio |',
        '|---|---|---|---|---|---|---|',
    ] + [
        f'| {r["case"]} ({r["shape"]}) | {r["psa"]} | {r["plain_ms"]:.2f} | '
        f'{r["ms"]:.2f} | {r["ratio"]:.3f} | {r["fused_ms"]:.2f} | '
        f'{r["fused_ratio"]:.3f} |'
        for r in blocks
    ]
    if args.out:
        write_block(args.out, 'psa_block_speed', '\n'.join(lines))
    print('\n'.join(lines))
    if args.skip_backbones:
        return
    rows = backbone_rows(args.iters, args.warmup)
    lines = [
        f'Command: `{cmd}`; {device}; 1-minute load average '
        f'{load_blocks:.2f} before, {load_average():.2f} after. Backbone '
        'alone, batch 1, eval-mode forward; deltas relative to the plain '
        'backbone on the same input.',
        '',
        '| backbone | PSA position | PSA | input | params (M) | +params | '
        'GFLOPs | +FLOPs | plain (ms) | with PSA (ms) | +latency |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ] + [
        f'| {r["backbone"]} | {r["where"]} | {r["psa"]} | {r["input"]} | '
        f'{r["params_m"]:.2f} | {100 * r["d_params"]:+.1f}% | '
        f'{r["gflops"]:.2f} | {100 * r["d_flops"]:+.1f}% | '
        f'{r["plain_ms"]:.1f} | {r["ms"]:.1f} | {100 * r["d_ms"]:+.1f}% |'
        for r in rows
    ]
    if args.out:
        write_block(args.out, 'psa_cost', '\n'.join(lines))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
