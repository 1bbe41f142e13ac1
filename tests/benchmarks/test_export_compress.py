"""benchmarks/export_compress.py: the docs table of tools/compress.py runs,
read from their summary.json (values, ratios, COCO fractions in percent, the
bits of a mixed run) and its errors."""

import json

import pytest

from ..e2e.runs import load_script

SPEED = dict(
    fp32_onnx='f.onnx',
    fp32_bytes=4000,
    fp32_ms=3.0,
    int8_ms=2.0,
    shape=[1, 3, 8, 8],
    runs=30,
    threads=1,
    load='Load average (1/5/15 min): before 0.50/0.40/0.30, after 0.60/0.40/0.30.',
)


def _summary(tmp_path, name, **stages):
    work = tmp_path / name
    work.mkdir()
    summary = dict(
        float_test=dict(metrics={'coco/bbox_mAP': 0.187, 'coco/bbox_mAP_50': 0.3}),
        qat_test=dict(metrics={'coco/bbox_mAP': 0.179}),
        export=dict(onnx='m.onnx', bytes=1000),
        onnx_test=dict(metrics={'coco/bbox_mAP': 0.177}),
        speed=SPEED,
    )
    summary.update(stages)
    (work / 'summary.json').write_text(json.dumps(summary))
    return str(work)


def test_row_values_and_ratios(tmp_path):
    tool = load_script('benchmarks', 'export_compress.py')
    work = _summary(tmp_path, 'det')
    text = tool.table([('det', 'qat-int8', work, 'coco/bbox_mAP')], mixed=False)
    assert (
        '| det, 1x3x8x8 | `qat-int8` | coco/bbox_mAP | 18.70 | 17.90 | 17.70 | -0.20 '
        '| 4,000 / 1,000 | 4.00x | 3.000 / 2.000 | 1.50x |'
    ) in text
    assert 'det: 1 thread(s), median of 30 interleaved runs. Load average' in text


def test_mixed_run_lists_bits_per_layer(tmp_path):
    tool = load_script('benchmarks', 'export_compress.py')
    allocate = dict(
        budget=['--latency-ms', 2.5],
        cost={'graph_ms': 2.4},
        allocation={'b.conv': 'float', 'a.conv': '8', 'c.conv': '8'},
    )
    work = _summary(tmp_path, 'mixed', allocate=allocate)
    text = tool.table([('m', 'mixed', work, 'coco/bbox_mAP')], mixed=True)
    assert 'm: `--latency-ms 2.5`, 2.4 (graph_ms) in the per-layer table.' in text
    assert '- 8 (2 layers): `a.conv`, `c.conv`' in text
    assert '- float (1 layers): `b.conv`' in text


def test_unknown_metric_names_the_valid_ones(tmp_path):
    tool = load_script('benchmarks', 'export_compress.py')
    work = _summary(tmp_path, 'det')
    with pytest.raises(SystemExit, match=r'metric top1 not in the results; valid: '):
        tool.table([('det', 'qat-int8', work, 'top1')], mixed=False)


def test_run_without_speed_stage(tmp_path):
    tool = load_script('benchmarks', 'export_compress.py')
    work = _summary(tmp_path, 'old', speed=None)
    with pytest.raises(SystemExit, match='has no speed stage result; rerun its'):
        tool.table([('old', 'qat-int8', work, 'coco/bbox_mAP')], mixed=False)
    with pytest.raises(SystemExit, match='no summary.json; run tools/compress.py'):
        tool.table([('x', 'qat-int8', str(tmp_path), 'coco/bbox_mAP')], mixed=False)


def test_time_runs_every_graph_in_one_process(tmp_path):
    import torch

    from mmcompress.quant.export import export_onnx

    tool = load_script('benchmarks', 'export_compress.py')
    paths = {}
    for key in ('fp32', 'int8'):
        torch.manual_seed(0)
        paths[key] = str(tmp_path / f'{key}.onnx')
        conv = torch.nn.Conv2d(3, 2, 3).eval()
        export_onnx(conv, torch.zeros(1, 3, 8, 8), paths[key], quantized=False)
    speed = dict(SPEED, fp32_onnx=paths['fp32'])
    work = _summary(tmp_path, 'det', speed=speed, export=dict(onnx=paths['int8']))
    text = tool.timing([('det', 'qat-int8', work, 'coco/bbox_mAP')], rounds=3)
    assert text.startswith('One process, 1x3x8x8, 1 thread, median of 3 interleaved')
    assert 'FP32 ' in text and '(1.00x), det ' in text
    assert 'Load average (1/5/15 min): before ' in text
