"""Export a quantization-aware-trained model to ONNX QDQ and check it in onnxruntime.

The graph takes the *preprocessed* input (what the model's data_preprocessor
produces: normalized float NCHW) and returns the raw head output
(``mode='tensor'``: class logits for classifiers).

Examples:
    python tools/export_onnx.py configs/quant/mmpretrain/lsq_w8a8_fmnist.py \\
        work_dirs/lsq_w8a8_fmnist/epoch_4.pth --out lsq_w8a8.onnx --shape 1 1 28 28
    # also compare PyTorch and onnxruntime on 2000 test images (classifiers):
    python tools/export_onnx.py CONFIG CKPT --out m.onnx --shape 1 1 28 28 --verify 2000
    # for onnxruntime's int8 kernels (BN folded, conv outputs re-quantized):
    python tools/export_onnx.py CONFIG CKPT --out m.onnx --shape 1 1 28 28 --ort-int8
"""

import argparse
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint

import mmcompress  # noqa: F401  (compatibility fixes and registration first)
from mmcompress.quant.export import (
    TensorModeWrapper,
    check_example_input,
    compare_with_onnxruntime,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description='Export a QAT model to ONNX QDQ')
    parser.add_argument('config', help='the (quantized) model config')
    parser.add_argument('checkpoint', help='the QAT checkpoint')
    parser.add_argument('--out', required=True, help='output .onnx path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[1, 3, 224, 224],
        help='example input shape N C H W (batch is dynamic)',
    )
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset')
    parser.add_argument(
        '--verify',
        type=int,
        default=0,
        help='compare with PyTorch on this many test samples',
    )
    parser.add_argument(
        '--ort-int8',
        action='store_true',
        help='rewrite the graph for onnxruntime integer kernels '
        '(BN folding, int32 bias, calibrated 8-bit outputs of '
        'convs not followed by a quantizer; see '
        'optimize_for_onnxruntime)',
    )
    parser.add_argument(
        '--calib-batches',
        type=int,
        default=4,
        help='test batches used to calibrate --ort-int8',
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings'
    )
    return parser


def fail(message: str) -> None:
    """Exit with one line on stderr (no traceback): a user mistake."""
    sys.exit(f'export_onnx.py: error: {message}')


def check_output_path(out: str) -> None:
    """Refuse an ``--out`` that cannot be written, before any work: a folder,
    or a file in a folder that cannot be created or written."""
    if osp.isdir(out):
        fail(
            f'--out {out} is a folder; give the path of the .onnx '
            f'file to write, e.g. {osp.join(out, "model.onnx")}'
        )
    folder = osp.dirname(osp.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        fail(
            f'--out {out}: cannot create the output folder {folder} '
            f'({error.strerror or error})'
        )
    if not os.access(folder, os.W_OK):
        fail(
            f'--out {out}: the output folder {folder} is not '
            'writable; choose another folder'
        )


def check_shape(model, shape) -> torch.Tensor:
    """The example input of ``--shape``, refused with one line naming the
    shape and what the model expects when it does not fit."""
    if any(size <= 0 for size in shape):
        fail(
            f'--shape {" ".join(map(str, shape))}: every size must be '
            'positive (N C H W for image models)'
        )
    example = torch.randn(*shape)
    try:
        check_example_input(model, example)
    except ValueError as error:
        fail(f'--shape {" ".join(map(str, shape))}: {error}')
    return example


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_output_path(args.out)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    DefaultScope.get_instance(
        'export_onnx', scope_name=cfg.get('default_scope', 'mmengine')
    )
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=False)
    model.eval()
    wrapper = TensorModeWrapper(model)
    example = check_shape(wrapper, args.shape)
    data = export_onnx(wrapper, example, opset_version=args.opset)
    batches = []
    if args.verify or args.ort_int8:
        min_batches = args.calib_batches if args.ort_int8 else 1
        count = 0
        for batch in Runner.build_dataloader(cfg.test_dataloader):
            batches.append(model.data_preprocessor(batch, False)['inputs'])
            count += batches[-1].shape[0]
            if count >= args.verify and len(batches) >= min_batches:
                break
    if args.ort_int8:
        data = optimize_for_onnxruntime(data, batches[: args.calib_batches])
    with open(args.out, 'wb') as file:
        file.write(data)
    result = dict(onnx=args.out, bytes=len(data))
    if args.verify > 0:
        session = onnxruntime_session(data)
        samples = torch.cat(batches)[: args.verify]
        result.update(
            compare_with_onnxruntime(wrapper, session, list(samples.split(256)))
        )
    print(json.dumps(result))


if __name__ == '__main__':
    main()
