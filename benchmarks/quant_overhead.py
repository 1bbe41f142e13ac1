"""Training-step overhead of W4A4 QAT: mmcompress vs torch.ao eager QAT, vs FP32.

Builds mmpretrain's ResNet-18 classifier four times from the same weights:
FP32; mmcompress ``QuantizedModel`` (LSQ W4A4, first conv and fc float, as the
papers), with the eager LSQ function and with the fused CPU kernel
(``fused=True``); torch.ao eager ``prepare_qat`` with 4-bit fake quants (per-channel
weights [-8, 7], moving-average activations [0, 15]) on every Conv2d/Linear
(torch.ao's eager mode quantizes module outputs, so activations are quantized
once per module). One training step = forward + cross-entropy + backward + SGD
step. The models are timed round-robin in one process (after warm-up) and
the median step time is reported; ratios are taken within the run.
``--methods ewgs daq n2uq`` adds those W4A4 quantizers on the same layers
(eager and fused). ``--compile`` adds FP32, LSQ W4A4 (eager function and
fused kernels) and the fused rows of ``--methods`` compiled with inductor, each
after one eager step that initializes the quantizers (as mmengine's
``compile=True`` with mmcompress).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/quant_overhead.py --batch 8 --size 224 \
        --steps 10 --out docs/quant/overhead.md
"""

import argparse
import copy
import platform
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from machine_load import LoadRecord, add_load_argument
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant import quantize_model
from mmcompress.quant.kernels import kernel_error, load_kernels

FLOAT_MODEL = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=512),
)


def torch_ao_qat(model: nn.Module) -> nn.Module:
    """torch.ao eager-mode QAT with 4-bit fake quants on Conv2d / Linear."""
    from torch.ao import quantization as tq

    act = tq.FakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=15,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    weight = tq.FakeQuantize.with_args(
        observer=tq.MovingAveragePerChannelMinMaxObserver,
        quant_min=-8,
        quant_max=7,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
    )
    qconfig = tq.QConfig(activation=act, weight=weight)
    model.backbone.qconfig = qconfig
    model.head.qconfig = qconfig
    model.backbone.conv1.qconfig = None
    model.head.fc.qconfig = None
    return tq.prepare_qat(model, inplace=False)


QUANTIZERS = dict(
    lsq=(
        dict(type='LSQQuantizer', bits=4, signed=True),
        dict(type='LSQQuantizer', bits=4),
    ),
    ewgs=(
        dict(type='EWGSQuantizer', bits=4, role='weight'),
        dict(type='EWGSQuantizer', bits=4, role='activation'),
    ),
    daq=(
        dict(type='DAQQuantizer', bits=4, role='weight'),
        dict(type='DAQQuantizer', bits=4, role='activation'),
    ),
    n2uq=(
        dict(type='N2UQWeightQuantizer', bits=4),
        dict(type='N2UQActQuantizer', bits=4),
    ),
)


def qat_w4a4(model: nn.Module, method: str = 'lsq', fused: bool = False) -> nn.Module:
    """mmcompress W4A4 QAT (first conv and fc float) of ``model``.

    Args:
        model (nn.Module): The float classifier (copied).
        method (str): A key of ``QUANTIZERS``. Defaults to ``'lsq'``.
        fused (bool): Use the fused kernels; exits when they cannot be built.
            Defaults to False.

    Returns:
        nn.Module: The ``QuantizedModel``.
    """
    if fused and load_kernels(warn=False) is None:
        raise SystemExit(f'the fused kernels cannot be built: {kernel_error()}')
    w, a = (dict(spec, fused=fused) for spec in QUANTIZERS[method])
    return quantize_model(copy.deepcopy(model), w=w, a=a)


def step_time(model, optimizer, images, labels, bf16=False):
    start = time.perf_counter()
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        logits = model(images, mode='tensor')
        loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def report(lines: list, script: str, args, load: LoadRecord, flags: str = '') -> None:
    """Print a markdown report ending with its command and the load average,
    and write it to ``args.out`` when given.

    Args:
        lines (list[str]): The report's lines before the command.
        script (str): File name of the benchmark in ``benchmarks/``.
        args (Namespace): Its arguments (``batch``, ``size``, ``steps``,
            ``out``).
        load (LoadRecord): The stopped load record of the run.
        flags (str): Further command-line flags of the run. Defaults to ''.
    """
    lines = lines + [
        '',
        f'Reproduce: `OMP_NUM_THREADS={torch.get_num_threads()} .venv/bin/python '
        f'benchmarks/{script} --batch {args.batch} --size {args.size} '
        f'--steps {args.steps}{flags}`',
        '',
        load.markdown(),
    ]
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--methods',
        nargs='+',
        default=[],
        choices=[m for m in QUANTIZERS if m != 'lsq'],
        help='add W4A4 rows of these quantizers (eager and fused)',
    )
    parser.add_argument(
        '--compile',
        action='store_true',
        help='add FP32, LSQ W4A4 (eager and fused) and the fused --methods '
        'rows compiled with torch.compile (inductor), each after one eager step',
    )
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='add FP32 and LSQ W4A4 rows in channels_last',
    )
    parser.add_argument(
        '--bf16',
        action='store_true',
        help='add FP32 and LSQ W4A4 rows under CPU bf16 autocast',
    )
    parser.add_argument('--out', default=None, help='markdown file to write')
    add_load_argument(parser)
    args = parser.parse_args()
    load = LoadRecord(args.allow_loaded, threads=torch.get_num_threads())
    torch.manual_seed(0)
    DefaultScope.get_instance('quant_overhead', scope_name='mmpretrain')
    fp32 = MODELS.build(copy.deepcopy(FLOAT_MODEL)).train()
    tao = torch_ao_qat(copy.deepcopy(fp32)).train()
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 1000, (args.batch,))
    models = dict(
        fp32=fp32,
        mmcompress_w4a4=qat_w4a4(fp32),
        mmcompress_w4a4_fused=qat_w4a4(fp32, fused=True),
        torch_ao_w4a4=tao,
    )
    for method in args.methods:
        models[f'{method}_w4a4'] = qat_w4a4(fp32, method)
        models[f'{method}_w4a4_fused'] = qat_w4a4(fp32, method, fused=True)
    variants = [v for v in ('compile', 'channels_last', 'bf16') if getattr(args, v)]
    for variant in variants:
        keys = ('fp32', 'mmcompress_w4a4')
        if variant == 'compile':
            keys += ('mmcompress_w4a4_fused',)
            keys += tuple(f'{method}_w4a4_fused' for method in args.methods)
        for key in keys:
            model = copy.deepcopy(models[key])
            if variant == 'channels_last':
                model = model.to(memory_format=torch.channels_last)
            models[f'{key}_{variant}'] = model
    optims = {
        k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
        for k, m in models.items()
    }
    for key, model in models.items():
        if key.endswith('_compile'):
            # the first step runs eagerly, as with mmengine's compile=True
            # (mmcompress.utils.compile_compat): it initializes the quantizers,
            # which is not traceable; a compiled first call would break the
            # graph inside the backbone's loop and leave the model split into
            # per-module graphs for the rest of the run
            step_time(model, optims[key], images, labels)
    images_cl = images.contiguous(memory_format=torch.channels_last)
    run = {
        k: (
            torch.compile(m) if k.endswith('_compile') else m,
            images_cl if k.endswith('_channels_last') else images,
            k.endswith('_bf16'),
        )
        for k, m in models.items()
    }
    times = {k: [] for k in models}
    for i in range(args.warmup + args.steps):
        for key, (model, inputs, bf16) in run.items():
            elapsed = step_time(model, optims[key], inputs, labels, bf16)
            if i >= args.warmup:
                times[key].append(elapsed)
    load.stop()
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [(k, median[k], median[k] / median['fp32']) for k in models]
    lines = [
        '# QAT training-step overhead (mmpretrain ResNet-18)',
        '',
        f'Batch {args.batch} x 3 x {args.size} x {args.size}, '
        f'{args.steps} timed steps per model after {args.warmup} warm-up, '
        f'round-robin in one process; torch {torch.__version__}, '
        f'{torch.get_num_threads()} thread(s), '
        f'{platform.processor() or platform.machine()}.',
        '',
        '| model | median step (s) | / FP32 |',
        '|---|---|---|',
    ]
    lines += [f'| {k} | {t:.3f} | {r:.2f}x |' for k, t, r in rows]
    lines += [''] + [
        f'{key} / torch.ao: {median[key] / median["torch_ao_w4a4"]:.2f}x'
        for key in ('mmcompress_w4a4', 'mmcompress_w4a4_fused')
    ]
    lines += [
        f'{key} / fp32_{v}: {median[key] / median[f"fp32_{v}"]:.2f}x'
        for v in variants
        for key in (
            f'mmcompress_w4a4_{v}',
            f'mmcompress_w4a4_fused_{v}',
            *(f'{method}_w4a4_fused_{v}' for method in args.methods),
        )
        if key in median
    ]
    flags = ''.join(
        f' --{flag}'
        for flag, on in (
            ('warmup ' + str(args.warmup), True),
            ('methods ' + ' '.join(args.methods), bool(args.methods)),
            *((v.replace('_', '-'), True) for v in variants),
        )
        if on
    )
    report(lines, 'quant_overhead.py', args, load, flags)


if __name__ == '__main__':
    main()
