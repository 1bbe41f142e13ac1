"""Evaluate an exported ONNX network with the downstream's stock metric.

The network part runs in onnxruntime (``tools/export_onnx.py`` output), the
post-processing in the downstream's own Python (:class:`ORTModel`), the
metric is the config's ``test_evaluator``; the printed JSON holds the metrics.

Examples:
    python tools/export_onnx.py CONFIG QAT_CKPT --out det.onnx --shape 1 3 128 128
    python tools/test_onnx.py CONFIG det.onnx
    # the same through the stock tools/test.py: write the ORTModel config
    python tools/test_onnx.py CONFIG det.onnx --dump-config ort_config.py
    python tools/test.py ort_config.py QAT_CKPT  # weights unused: the ONNX computes
"""

import argparse
import json
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmcompress  # noqa: F401  (compatibility fixes and registration first)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description='Test an ONNX network')
    parser.add_argument('config', help='the config the ONNX file was exported from')
    parser.add_argument('onnx', help='the .onnx file (tools/export_onnx.py)')
    parser.add_argument('--work-dir', help='where the runner writes its logs')
    parser.add_argument('--threads', type=int, default=1, help='onnxruntime threads')
    parser.add_argument(
        '--dump-config', help='write the ORTModel test config here and exit'
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings'
    )
    return parser


def ort_config(cfg: Config, onnx: str, threads: int = 1) -> Config:
    """``cfg`` with its model run by :class:`ORTModel` on ``onnx``.

    Args:
        cfg (Config): The config the ONNX file was exported from.
        onnx (str): The ``.onnx`` path.
        threads (int): onnxruntime intra-op threads.

    Returns:
        Config: A copy for ``Runner.from_cfg`` / the stock ``tools/test.py``.
    """
    cfg = Config(cfg.to_dict())
    model = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', cfg.pop('data_preprocessor'))
    cfg.model = dict(
        type='ORTModel', model=model, onnx=osp.abspath(onnx), threads=threads
    )
    cfg.load_from = None
    cfg.resume = False
    return cfg


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not osp.isfile(args.onnx):
        sys.exit(f'test_onnx.py: error: {args.onnx} is not a file (export it first)')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = ort_config(cfg, args.onnx, args.threads)
    if args.dump_config:
        cfg.dump(args.dump_config)
        print(json.dumps(dict(config=args.dump_config)))
        return
    cfg.work_dir = args.work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.onnx))[0] + '_onnx'
    )
    metrics = Runner.from_cfg(cfg).test()
    print(json.dumps({k: float(v) for k, v in metrics.items()}))


if __name__ == '__main__':
    main()
