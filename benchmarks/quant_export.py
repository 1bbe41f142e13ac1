"""ONNX export of QAT models: onnxruntime latency and agreement with PyTorch.

(a) Latency: mmpretrain ResNet-18 (224x224, batch 1). The same float weights give
    (1) the FP32 ONNX model, (2) onnxruntime's own static QDQ quantization of it
    (``quantize_static``, per-channel int8 weights, uint8 activations, calibrated
    on the same batches) and (3) mmcompress's export of the W8A8 LSQ QAT model
    with every Conv2d/Linear quantized, as onnxruntime does, and 8-bit output
    quantizers on the residual tensors and the BN shifts on the int32 grid
    (``integer_bias``; quantizers initialized on those batches), as exported
    and after
    :func:`~mmcompress.quant.export.optimize_for_onnxruntime`. Sessions: CPU
    provider, all graph optimizations, 1 thread; median of interleaved runs in
    one process.
(b) Agreement: a trained Fashion-MNIST QAT checkpoint exported and run on the
    10k test images: top-1 agreement with the PyTorch QAT model, and both
    accuracies.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/quant_export.py --runs 30 \
        --qat CONFIG CHECKPOINT [--qat CONFIG CHECKPOINT ...] --out docs/quant/export.md

With ``--out`` the latency table replaces the block between
``<!-- quant_export_latency:begin/end -->`` and, with ``--qat``, the agreement
table the block ``quant_export_agreement``; the text around them is kept.
"""

import argparse
import copy
import io
import os.path as osp
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint

import mmcompress  # noqa: F401
import mmcompress.quant  # noqa: F401  (registers the quantizers)
from mmcompress.quant import quantize_model
from mmcompress.quant.export import (
    TensorModeWrapper,
    compare_with_onnxruntime,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402

FLOAT_MODEL = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=512),
)
#: ``output_quantizers`` of the QAT model (see mmcompress.quant.transform):
#: 8-bit grids on the residual tensors, as in lsq_w8a8_fmnist.py, with the
#: max-pooled stem output and the linear layer (quantized here) reading the
#: pooled feature's grid.
OUTPUT_QUANTIZERS = dict(
    modules=[
        'backbone.maxpool',
        r're:backbone\.layer\d+\.\d+',
        r're:backbone\.layer\d+\.\d+\.(bn2|downsample)',
        'neck',
    ],
    readers=[r're:backbone\.layer\d+\.\d+\.(conv1|downsample\.0)', 'head.fc'],
)


def _float_onnx(model, example):
    buffer = io.BytesIO()
    torch.onnx.export(
        TensorModeWrapper(model).eval(),
        (example,),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=['input'],
        output_names=['output'],
    )
    return buffer.getvalue()


def _ort_static_qdq(float_onnx, batches, nodes_to_exclude=None):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{'input': b.numpy()} for b in batches])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (osp.join(tmp, n) for n in ('f.onnx', 'p.onnx', 'q.onnx'))
        with open(src, 'wb') as file:
            file.write(float_onnx)
        quant_pre_process(src, pre)
        quantize_static(
            pre,
            dst,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=nodes_to_exclude,
        )
        with open(dst, 'rb') as file:
            return file.read()


def latency(runs, size, threads):
    torch.manual_seed(0)
    DefaultScope.get_instance('quant_export', scope_name='mmpretrain')
    fp32 = MODELS.build(copy.deepcopy(FLOAT_MODEL)).eval()
    calib = [torch.randn(1, 3, size, size) for _ in range(8)]
    qat = quantize_model(
        copy.deepcopy(fp32).train(),
        w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=8),
        keep_first_float=False,
        keep_output_float=False,
        output_quantizers=OUTPUT_QUANTIZERS,
        integer_bias=True,
    )
    with torch.no_grad():
        qat(torch.cat(calib), mode='tensor')
    qat.eval()
    example = calib[0]
    blobs = dict(
        fp32=_float_onnx(fp32, example),
        mmcompress_qat_w8a8=export_onnx(TensorModeWrapper(qat), example),
    )
    blobs['mmcompress_qat_w8a8_ort'] = optimize_for_onnxruntime(
        blobs['mmcompress_qat_w8a8'], calib
    )
    blobs['ort_static_qdq'] = _ort_static_qdq(blobs['fp32'], calib)
    sessions = {k: onnxruntime_session(v, threads) for k, v in blobs.items()}
    feed = {'input': example.numpy()}
    times = {k: [] for k in sessions}
    for i in range(runs + 3):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            if i >= 3:
                times[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def agreement_on_fmnist(config, checkpoint):
    cfg = Config.fromfile(config)
    DefaultScope.get_instance(
        f'quant_export_{osp.basename(checkpoint)}', scope_name=cfg.default_scope
    )
    model_cfg = cfg.model
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=False)
    model.eval()
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    loader = Runner.build_dataloader(cfg.test_dataloader)
    batches, labels = [], []
    for batch in loader:
        batches.append(model.data_preprocessor(batch, False)['inputs'])
        labels.append(torch.stack([s.gt_label for s in batch['data_samples']]).view(-1))
    wrapper = TensorModeWrapper(model)
    blob = export_onnx(wrapper, batches[0][:1])
    session = onnxruntime_session(blob)
    result = compare_with_onnxruntime(wrapper, session, batches)
    fast = onnxruntime_session(optimize_for_onnxruntime(blob, batches[:4]))
    result['ort_int8_agreement'] = compare_with_onnxruntime(wrapper, fast, batches)[
        'top1_agreement'
    ]
    correct_pt = correct_ort = 0
    with torch.no_grad():
        for inputs, target in zip(batches, labels):
            correct_pt += int((wrapper(inputs).argmax(-1) == target).sum())
            out = session.run(None, {'input': inputs.numpy()})[0]
            correct_ort += int(
                (torch.from_numpy(np.asarray(out)).argmax(-1) == target).sum()
            )
    n = result['num_samples']
    result.update(
        pytorch_top1=100 * correct_pt / n, onnxruntime_top1=100 * correct_ort / n
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument(
        '--qat', nargs=2, action='append', default=[], metavar=('CONFIG', 'CHECKPOINT')
    )
    parser.add_argument('--out', default=None)
    args = parser.parse_args()
    import onnxruntime

    medians = latency(args.runs, args.size, args.threads)
    ref = medians['ort_static_qdq']
    command = (
        'OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quant_export.py '
        f'--runs {args.runs} --size {args.size} --threads {args.threads}'
        + ''.join(f' --qat {c} {k}' for c, k in args.qat)
        + (f' --out {args.out}' if args.out else '')
    )
    lines = [
        f'ResNet-18 (mmpretrain), 1 x 3 x {args.size} x {args.size}; '
        f'onnxruntime {onnxruntime.__version__}, CPU provider, '
        f'{args.threads} thread(s), median of {args.runs} interleaved runs.',
        '',
        '| model | median latency (ms) | speed vs onnxruntime static QDQ |',
        '|---|---|---|',
    ]
    for key, value in medians.items():
        lines.append(f'| {key} | {1000 * value:.1f} | {ref / value:.2f}x |')
    lines += [
        '',
        '`mmcompress_qat_w8a8`: `export_onnx` as is (convs whose output is '
        'not quantized, residual adds, pooling and the fc run in float in '
        'onnxruntime); `_ort`: after `optimize_for_onnxruntime` (BN folded, '
        'int32 bias, 8-bit grids on conv outputs, residual adds and pooling: '
        "the QAT model's own grids, here all trained `output_quantizers`; "
        'calibrated min/max where no QAT quantizer reads a tensor). The '
        'weights are random (no ImageNet weights offline), so agreement is '
        'measured on real data.',
        '',
        f'Reproduce: `{command}`',
    ]
    blocks = dict(quant_export_latency=lines)
    if args.qat:
        lines = [
            '| config | checkpoint | top-1 agreement | agreement after '
            'optimize_for_onnxruntime | PyTorch top-1 | onnxruntime top-1 '
            '| max abs logit diff |',
            '|---|---|---|---|---|---|---|',
        ]
        for config, checkpoint in args.qat:
            r = agreement_on_fmnist(config, checkpoint)
            lines.append(
                f'| {osp.basename(config)} | {checkpoint} | '
                f'{100 * r["top1_agreement"]:.2f}% | '
                f'{100 * r["ort_int8_agreement"]:.2f}% | {r["pytorch_top1"]:.2f} | '
                f'{r["onnxruntime_top1"]:.2f} | {r["max_abs_diff"]:.2e} |'
            )
        lines += ['', f'Reproduce: `{command}`']
        blocks['quant_export_agreement'] = lines
    for name, block in blocks.items():
        print('\n'.join(block))
        if args.out:
            write_block(args.out, name, '\n'.join(block))


if __name__ == '__main__':
    main()
