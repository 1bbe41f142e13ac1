"""The table of ``tools/compress.py`` runs for docs/deploy.md, read from the
runs' ``WORK/summary.json`` (nothing is re-run: re-time a run by deleting its
``WORK/speed`` folder and running its command again).

For each ``--run NAME RECIPE WORK METRIC``: the metric of the float, PyTorch
quantized and onnxruntime int8 models, the ONNX file sizes and the
onnxruntime latencies of the ``speed`` stage, with their ratios and the load
average at the timing. ``--mixed`` adds, for runs of the ``mixed`` recipe,
the bits of every layer and the latency budget. ``--time N`` times, in one
process, the first run's FP32 graph and every run's int8 graph alternately
(onnxruntime CPU, 1 thread, batch 1, one random input of the first run's
``--shape``, median of ``N`` rounds after 5 warm-up rounds) with the load
average, so that graphs of several runs compare under the same load.

Usage:
    python benchmarks/export_compress.py \\
        --run "Fashion-MNIST teacher" ptq-int8 work_dirs/compress/teacher_ptq_int8 \\
            accuracy/top1 \\
        --run "scenes RetinaNet" qat-int8 work_dirs/compress/retinanet_qat_int8 \\
            coco/bbox_mAP \\
        [--mixed] [--time 200] [--out docs/deploy.md --block compress_runs]
"""

import argparse
import functools
import json
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
from doc_blocks import write_block  # noqa: E402
from machine_load import LoadRecord, interleaved_ms  # noqa: E402

QUANTIZED = ('qat_test', 'ptq_test')


def load(work: str) -> dict:
    """The run's ``summary.json``; a run without it (or without its ``speed``
    stage) is an error naming the work dir and the fix."""
    path = osp.join(work, 'summary.json')
    if not osp.isfile(path):
        sys.exit(
            f'{work}: no summary.json; run tools/compress.py with --work-dir {work}'
        )
    with open(path) as file:
        summary = json.load(file)
    if not summary.get('speed'):
        sys.exit(
            f'{work}: its summary has no speed stage result; rerun its '
            'tools/compress.py command (the recipes end with `speed`)'
        )
    return summary


def metric(summary: dict, stage: str, key: str) -> float:
    """The stage's metric in percent (COCO metrics are reported as fractions)."""
    metrics = summary[stage]['metrics']
    if key not in metrics:
        sys.exit(
            f'metric {key} not in the results; valid: {", ".join(sorted(metrics))}'
        )
    value = metrics[key]
    return value * 100 if key.startswith('coco/') else value


def row(name: str, recipe: str, summary: dict, key: str) -> str:
    quantized = next(s for s in QUANTIZED if s in summary)
    speed, exported = summary['speed'], summary['export']
    shape = 'x'.join(map(str, speed['shape']))
    values = [metric(summary, s, key) for s in ('float_test', quantized, 'onnx_test')]
    cells = [
        f'{name}, {shape}',
        f'`{recipe}`',
        key,
        *(f'{v:.2f}' for v in values),
        f'{values[2] - values[1]:+.2f}',
        f'{speed["fp32_bytes"]:,} / {exported["bytes"]:,}',
        f'{speed["fp32_bytes"] / exported["bytes"]:.2f}x',
        f'{speed["fp32_ms"]:.3f} / {speed["int8_ms"]:.3f}',
        f'{speed["fp32_ms"] / speed["int8_ms"]:.2f}x',
    ]
    return '| ' + ' | '.join(cells) + ' |'


def allocation(name: str, summary: dict) -> str:
    """The bits per layer of a ``mixed`` run and its budget."""
    allocated = summary['allocate']
    flag, budget = allocated['budget']
    ((unit, used),) = allocated['cost'].items()
    by_bits = {}
    for layer, bits in sorted(allocated['allocation'].items()):
        by_bits.setdefault(bits, []).append(f'`{layer}`')
    lines = [
        f'{name}: `{flag} {budget:g}`, {used:.4g} ({unit}) in the per-layer table.'
    ]
    for bits, layers in sorted(by_bits.items()):
        lines.append(f'- {bits} ({len(layers)} layers): {", ".join(layers)}')
    return '\n'.join(lines)


def timing(runs: list, rounds: int) -> str:
    """The FP32 graph of the first run and the int8 graph of every run,
    timed alternately in one process (module docstring)."""
    import numpy as np

    from mmcompress.quant.export import onnxruntime_session

    first = load(runs[0][2])['speed']
    paths = {'FP32': first['fp32_onnx']}
    paths.update({name: load(work)['export']['onnx'] for name, _, work, _ in runs})
    x = np.random.default_rng(0).standard_normal(first['shape']).astype('float32')
    calls = {}
    for key, path in paths.items():
        with open(path, 'rb') as file:
            session = onnxruntime_session(file.read(), 1)
        calls[key] = functools.partial(session.run, None, {'input': x})
    load_record = LoadRecord(allow_loaded=True)
    ms = interleaved_ms(calls, rounds, 5)
    load_record.stop()
    cells = ', '.join(
        f'{key} {value:.3f} ms ({ms["FP32"] / value:.2f}x)' for key, value in ms.items()
    )
    shape = 'x'.join(map(str, first['shape']))
    return (
        f'One process, {shape}, 1 thread, median of {rounds} interleaved rounds '
        f'(speed-up vs FP32): {cells}. {load_record.markdown()}'
    )


def table(runs: list, mixed: bool) -> str:
    head = (
        '| model | recipe | metric | float (PyTorch) | quantized (PyTorch) '
        '| int8 (onnxruntime) | int8 - quantized | ONNX bytes FP32 / int8 '
        '| size ratio | onnxruntime ms FP32 / int8 | speed-up |'
    )
    lines = [head, '|---' * 11 + '|']
    notes = []
    for name, recipe, work, key in runs:
        summary = load(work)
        lines.append(row(name, recipe, summary, key))
        speed = summary['speed']
        notes.append(
            f'{name}: {speed["threads"]} thread(s), median of {speed["runs"]} '
            f'interleaved runs. {speed["load"]}'
        )
        if mixed and 'allocate' in summary:
            notes.append(allocation(name, summary))
    return '\n'.join(lines) + '\n\n' + '\n\n'.join(notes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--run',
        nargs=4,
        action='append',
        required=True,
        metavar=('NAME', 'RECIPE', 'WORK', 'METRIC'),
    )
    parser.add_argument('--mixed', action='store_true', help='bits per layer too')
    parser.add_argument(
        '--time', type=int, default=0, metavar='N', help='time all graphs together'
    )
    parser.add_argument('--out', help='markdown page to write the block into')
    parser.add_argument('--block', default='compress_runs')
    args = parser.parse_args(argv)
    text = table(args.run, args.mixed)
    if args.time:
        text += '\n\n' + timing(args.run, args.time)
    print(text)
    if args.out:
        write_block(args.out, args.block, text)


if __name__ == '__main__':
    main()
