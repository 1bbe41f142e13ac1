"""Export a quantization-aware-trained model to ONNX and check it in onnxruntime.

The graph takes the *preprocessed* input (what the model's data_preprocessor
produces: normalized float NCHW) and returns the network's raw outputs,
``head(extract_feat(x))``: class logits for classifiers, per-level class
scores and box regressions for single-stage detectors, class logits at
feature resolution for segmentors, heatmaps for top-down pose models. Their
post-processing stays the downstream's Python: evaluate the file with
``tools/test_onnx.py``.

Two formats (``--format``):

* ``int8`` (default): the integer graph for onnxruntime's CPU kernels
  (``optimize_for_onnxruntime``: BN folded, int32 bias, 8-bit grids between
  integer ops, so onnxruntime runs QLinearConv / QLinearAdd...). Grids the
  QAT model does not define are calibrated on ``--calib-batches`` test
  batches, loaded only when needed;
* ``qdq``: the QAT model written as it computes, ``QuantizeLinear ->
  DequantizeLinear`` around the quantized layers' inputs and weights, for
  runtimes that make their own integer plan from QDQ (TensorRT-style
  consumers); onnxruntime runs most of it in float (slower than FP32).

Examples:
    python tools/export_onnx.py configs/quant/mmpretrain/lsq_w8a8_fmnist.py \\
        work_dirs/lsq_w8a8_fmnist/epoch_4.pth --out lsq_w8a8.onnx --shape 1 1 28 28
    # also compare PyTorch and onnxruntime on 2000 test images:
    python tools/export_onnx.py CONFIG CKPT --out m.onnx --shape 1 1 28 28 --verify 2000
    # the plain QDQ graph for other runtimes:
    python tools/export_onnx.py CONFIG CKPT --out m.onnx --shape 1 1 28 28 --format qdq
    # a detector (height and width stay dynamic), then its stock metric:
    CONFIG=configs/quant/mmdet/lsq_w8a8_retinanet_r18-w16_scenes.py
    python tools/export_onnx.py $CONFIG CKPT --out det.onnx --shape 1 3 128 128
    python tools/test_onnx.py $CONFIG det.onnx
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
    check_example_input,
    compare_with_onnxruntime,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)
from mmcompress.quant.export.network import NetworkWrapper, add_metadata
from mmcompress.quant.export.runtime import compare_outputs

#: ``--format`` choices: the onnxruntime integer graph, the plain QDQ graph.
FORMATS = ('int8', 'qdq')


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description='Export a QAT model to ONNX')
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
        '--format',
        choices=FORMATS,
        default='int8',
        help='int8 (default): the integer graph onnxruntime runs in 8-bit '
        'kernels (BN folding, int32 bias, 8-bit grids between integer ops; see '
        'optimize_for_onnxruntime); qdq: the plain QDQ graph, as the QAT model '
        'computes, for runtimes that plan their own integer kernels',
    )
    parser.add_argument(
        '--ort-int8',
        action='store_true',
        help='the same as --format int8 (the default), kept for old commands',
    )
    parser.add_argument(
        '--calib-batches',
        type=int,
        default=4,
        help='test batches that calibrate the int8 grids the QAT model lacks',
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


class CalibrationBatches:
    """Preprocessed test batches, loaded on first use (the int8 rewrite asks
    for them only when some grid needs calibrating).

    Args:
        cfg (Config): The config (its ``test_dataloader``).
        model: The model (its ``data_preprocessor``).
        count (int): Batches to load.
    """

    def __init__(self, cfg, model, count: int) -> None:
        self.cfg, self.model, self.count = cfg, model, count
        self.batches = None

    def _load(self) -> list:
        if self.batches is None:
            self.batches = []
            try:
                loader = Runner.build_dataloader(self.cfg.test_dataloader)
                for batch in loader:
                    self.batches.append(self.model.data_preprocessor(batch, False))
                    if len(self.batches) >= self.count:
                        break
            except (OSError, FileNotFoundError, KeyError, ValueError) as error:
                fail(
                    f'--format int8 calibrates some 8-bit grids on '
                    f"{self.count} batches of the config's test_dataloader, "
                    f'which could not be read ({type(error).__name__}: {error}); '
                    'point the config at its data, or export --format qdq'
                )
        return [b['inputs'] for b in self.batches]

    def __iter__(self):
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def build_model(cfg):
    """The config's model with its data preprocessor, in eval mode."""
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def export(args, cfg, model) -> tuple:
    """``(ONNX bytes in args.format, the exported NetworkWrapper)``."""
    try:
        wrapper = NetworkWrapper(model)
    except TypeError as error:
        fail(str(error))
    example = check_shape(wrapper, args.shape)
    with torch.no_grad():
        reference = wrapper(example)
    # dense outputs (detection, segmentation) keep the image's aspect ratio
    dynamic_size = not isinstance(reference, torch.Tensor) or reference.dim() == 4
    data = export_onnx(
        wrapper,
        example,
        opset_version=args.opset,
        output_names=wrapper.output_names(),
        dynamic_size=dynamic_size,
    )
    if args.format == 'int8':
        data = optimize_for_onnxruntime(
            data, CalibrationBatches(cfg, model, args.calib_batches)
        )
    return add_metadata(data, wrapper.metadata()), wrapper


def verify(args, cfg, model, wrapper, data: bytes) -> dict:
    """Agreement of PyTorch and onnxruntime on ``--verify`` test samples:
    top-1 agreement for classifiers, per-output errors otherwise."""
    batches, count = [], 0
    for batch in Runner.build_dataloader(cfg.test_dataloader):
        batches.append(model.data_preprocessor(batch, False)['inputs'])
        count += batches[-1].shape[0]
        if count >= args.verify:
            break
    session = onnxruntime_session(data)
    if len(session.get_outputs()) == 1 and session.get_outputs()[0].name == 'output':
        shape = session.get_outputs()[0].shape
        if len(shape) == 2:  # class logits
            samples = torch.cat(batches)[: args.verify]
            return compare_with_onnxruntime(wrapper, session, list(samples.split(256)))
    return compare_outputs(wrapper, session, batches)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ort_int8:
        args.format = 'int8'
    check_output_path(args.out)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # the config's scope is current for the whole export, whatever scope an
    # earlier export or build in the same process made current
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmengine')):
        model = build_model(cfg)
        load_checkpoint(model, args.checkpoint, map_location='cpu', strict=False)
        model.eval()
        data, wrapper = export(args, cfg, model)
        with open(args.out, 'wb') as file:
            file.write(data)
        result = dict(onnx=args.out, format=args.format, bytes=len(data))
        if args.verify > 0:
            result.update(verify(args, cfg, model, wrapper, data))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
