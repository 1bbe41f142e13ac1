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
import io
import json
import os.path as osp
import statistics
import sys
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402


def loadavg() -> str:
    with open('/proc/loadavg') as handle:
        return ' '.join(handle.read().split()[:3])


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
    args = parser.parse_args()
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
    before = loadavg()
    rows = []
    for batch in args.batches:
        x = np.random.randn(batch, 1, 28, 28).astype(np.float32)
        times = {'ln': [], 'un': []}
        for norm in times:  # warm-up
            for _ in range(3):
                sessions[norm].run(None, {'input': x})
        for _ in range(args.rounds):
            for norm in times:
                start = time.perf_counter()
                for _ in range(args.iters):
                    sessions[norm].run(None, {'input': x})
                times[norm].append((time.perf_counter() - start) / args.iters)
        ln, un = (statistics.median(times[n]) * 1e3 for n in ('ln', 'un'))
        rows.append(dict(batch=batch, ln_ms=ln, un_ms=un, speedup=ln / un))
    after = loadavg()
    lines = [
        f'onnxruntime {ort.__version__}, CPUExecutionProvider, '
        f'{args.threads} intra-op thread(s); median of {args.rounds} '
        f'interleaved rounds x {args.iters} runs; graph nodes LN {nodes["ln"]}, '
        f'folded UN {nodes["un"]}; loadavg before {before}, after {after} '
        '(shared machine).',
        '',
        '| batch | LN (ms) | folded UN (ms) | LN / folded UN |',
        '|---|---|---|---|',
    ]
    for row in rows:
        lines.append(
            f'| {row["batch"]} | {row["ln_ms"]:.3f} | {row["un_ms"]:.3f} | '
            f'{row["speedup"]:.3f} |'
        )
    print(json.dumps(dict(rows=rows, loadavg=[before, after], nodes=nodes)))
    write_block(args.out, 'un_speed', '\n'.join(lines))


if __name__ == '__main__':
    main()
