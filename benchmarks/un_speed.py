"""onnxruntime latency of the Fashion-MNIST ViT with LayerNorm vs folded UN.

Both models are built from ``configs/un/mmpretrain/vit_{ln,un}_fmnist.py``
(same weights except the norms; random weights: latency does not depend on
them), exported to ONNX (opset 17: LN as one ``LayerNormalization`` node; UN
folded into the next Linear by :func:`export_folded_onnx`) and timed in one
process, interleaved round by round so both see the same machine load:
the median of ``--rounds`` rounds of ``--iters`` runs each, per batch size.

Usage::

    python benchmarks/un_speed.py --batches 1 64 --threads 1 \
        --out docs/models/unified_norm.md
"""

import argparse
import functools
import io
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
    from mmcompress.quant.export import TensorModeWrapper

    wrapper = TensorModeWrapper(build(norm)).eval()
    example = torch.randn(1, 1, 28, 28)
    if norm == 'un':
        return export_folded_onnx(wrapper, example)
    buffer = io.BytesIO()
    torch.onnx.export(
        wrapper,
        (example,),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=['input'],
        output_names=['output'],
        dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}},
    )
    return buffer.getvalue()


def main() -> None:
    import onnx
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 64])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--out', default='docs/models/unified_norm.md')
    add_load_argument(parser)
    args = parser.parse_args()
    load = LoadRecord(args.allow_loaded, threads=args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    sessions, nodes = {}, {}
    for norm in ('ln', 'un'):
        data = export(norm)
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


if __name__ == '__main__':
    main()
