"""onnxruntime latency of the Fashion-MNIST ViT with LayerNorm vs folded UN.

Both models are built from ``configs/un/mmpretrain/vit_{ln,un}_fmnist.py``
(same weights except the norms; random weights: latency does not depend on
them), exported to ONNX (opset 17: LN as one ``LayerNormalization`` node; UN
folded into the next Linear by :func:`export_folded_onnx`) and timed in one
process, interleaved round by round so both see the same machine load:
the median of ``--rounds`` rounds of ``--iters`` runs each, per batch size.

Then onnxruntime's profiler (``--profile-runs`` inferences per graph and batch,
the two graphs alternating, same threads) gives the share ``f`` of the LN
graph's kernel time spent in its ``LayerNormalization`` kernels. The folded
graph is the LN graph without those kernels (every other node is the same),
so ``1 / (1 - f)`` bounds the speed-up folding can give (Amdahl); the block
``un_profile`` lists it with the per-operator times of both graphs.

Usage::

    python benchmarks/un_speed.py --batches 1 64 --threads 1 \
        --out docs/models/unified_norm.md
"""

import argparse
import functools
import json
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from machine_load import LoadRecord, add_load_argument, interleaved_ms  # noqa: E402

from mmcompress.utils.ort_profile import onnxruntime_op_profiles  # noqa: E402

# the ONNX / onnxruntime normalisation kernels (LayerNorm and its fusions)
NORM_OPS = (
    'LayerNormalization',
    'SkipLayerNormalization',
    'SimplifiedLayerNormalization',
    'SkipSimplifiedLayerNormalization',
)


def _runs(session, feed: dict, iters: int) -> None:
    for _ in range(iters):
        session.run(None, feed)


def build(norm: str):
    cfg = Config.fromfile(osp.join(ROOT, f'configs/un/mmpretrain/vit_{norm}_fmnist.py'))
    DefaultScope.get_instance(f'un_speed_{norm}', scope_name='mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def export(norm: str) -> bytes:
    from mmcompress.models.norms import export_folded_onnx
    from mmcompress.quant.export import TensorModeWrapper, export_onnx

    wrapper = TensorModeWrapper(build(norm)).eval()
    example = torch.randn(1, 1, 28, 28)
    if norm == 'un':
        return export_folded_onnx(wrapper, example)
    return export_onnx(wrapper, example, quantized=False)


def main() -> None:
    import onnx
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 64])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument(
        '--profile-runs',
        type=int,
        default=50,
        help='inferences per graph and batch under the onnxruntime profiler '
        '(0: no profile)',
    )
    parser.add_argument('--out', default='docs/models/unified_norm.md')
    add_load_argument(parser)
    args = parser.parse_args()
    load = LoadRecord(args.allow_loaded, threads=args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    sessions, nodes, graphs = {}, {}, {}
    for norm in ('ln', 'un'):
        data = graphs[norm] = export(norm)
        graph = onnx.load_from_string(data).graph
        nodes[norm] = len(graph.node)
        sessions[norm] = ort.InferenceSession(
            data, options, providers=['CPUExecutionProvider']
        )
    rows = []
    for batch in args.batches:
        feed = {'input': np.random.randn(batch, 1, 28, 28).astype(np.float32)}
        runs = {
            norm: functools.partial(_runs, session, feed, args.iters)
            for norm, session in sessions.items()
        }
        ms = interleaved_ms(runs, iters=args.rounds, warmup=1)
        ln, un = (ms[n] / args.iters for n in ('ln', 'un'))
        rows.append(dict(batch=batch, ln_ms=ln, un_ms=un, speedup=ln / un))
    profiles = {
        batch: onnxruntime_op_profiles(
            graphs,
            {'input': np.random.randn(batch, 1, 28, 28).astype(np.float32)},
            runs=args.profile_runs,
            threads=args.threads,
        )
        for batch in (args.batches if args.profile_runs else ())
    }
    load.stop()
    lines = [
        f'onnxruntime {ort.__version__}, CPUExecutionProvider, '
        f'{args.threads} intra-op thread(s); median of {args.rounds} '
        f'interleaved rounds x {args.iters} runs; graph nodes LN {nodes["ln"]}, '
        f'folded UN {nodes["un"]}.',
        '',
        load.markdown(),
        '',
        '| batch | LN (ms) | folded UN (ms) | LN / folded UN |',
        '|---|---|---|---|',
    ]
    for row in rows:
        lines.append(
            f'| {row["batch"]} | {row["ln_ms"]:.3f} | {row["un_ms"]:.3f} | '
            f'{row["speedup"]:.3f} |'
        )
    print(json.dumps(dict(rows=rows, load=load.markdown(), nodes=nodes)))
    write_block(args.out, 'un_speed', '\n'.join(lines))
    if profiles:
        print(json.dumps(profiles))
        write_block(
            args.out, 'un_profile', profile_markdown(profiles, args, load.markdown())
        )


def profile_markdown(profiles: dict, args, load: str) -> str:
    """The ``un_profile`` block: the Amdahl bound per batch, then the
    per-operator kernel times of both graphs.

    Args:
        profiles (dict): ``{batch: onnxruntime_op_profiles of {'ln', 'un'}}``.
        args (Namespace): The command line (threads, profile runs).
        load (str): The run's load paragraph (:class:`LoadRecord`).

    Returns:
        str: Markdown.
    """
    lines = [
        f'onnxruntime profiler, {args.threads} intra-op thread(s), '
        f'{args.profile_runs} inferences per graph and batch, the graphs '
        'alternating (per operator the median over inferences of its kernel time; '
        'the profiler adds a cost per node, so the totals are above the '
        'timings of `un_speed`).',
        '',
        load,
        '',
        '| batch | LN graph kernels (ms) | norm kernels (ms) | '
        'share f | bound 1 / (1 − f) | folded UN graph kernels (ms) | '
        'LN / folded UN (kernels) |',
        '|---|---|---|---|---|---|---|',
    ]
    for batch, prof in profiles.items():
        ln, un = (sum(prof[n]['op_ms'].values()) for n in ('ln', 'un'))
        norm = sum(prof['ln']['op_ms'].get(op, 0.0) for op in NORM_OPS)
        share = norm / ln
        lines.append(
            f'| {batch} | {ln:.3f} | {norm:.3f} | {share:.3f} | '
            f'{1 / (1 - share):.3f} | {un:.3f} | {ln / un:.3f} |'
        )
    ops = sorted(
        {op for prof in profiles.values() for p in prof.values() for op in p['op_ms']},
        key=lambda op: -max(p['ln']['op_ms'].get(op, 0.0) for p in profiles.values()),
    )
    head = ' | '.join(f'LN b{b} | UN b{b}' for b in profiles)
    lines += [
        '',
        f'| operator | kernels LN / UN | {head} |',
        '|---|---|' + '---|' * (2 * len(profiles)),
    ]
    first = next(iter(profiles.values()))
    for op in ops:
        counts = '/'.join(str(first[n]['nodes'].get(op, 0)) for n in ('ln', 'un'))
        cells = ' | '.join(
            f'{p[n]["op_ms"].get(op, 0.0):.3f}'
            for p in profiles.values()
            for n in ('ln', 'un')
        )
        lines.append(f'| {op} | {counts} | {cells} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
