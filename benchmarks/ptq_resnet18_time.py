"""Wall time of W4A4 calibration + unit-wise reconstruction of an ImageNet-size
ResNet-18 (mmpretrain's ``_base_/models/resnet18.py``, the 8 BasicBlocks as units).

Only the time is measured: the weights are the random initialisation and the
images are random 224 x 224 tensors (no ImageNet here), which costs the same
arithmetic as real ones (denormals are flushed, as for every random-weight
timing). The load average of the machine is recorded before and after; the
script refuses a loaded machine unless ``--allow-loaded`` (then the output says
so).

Usage:
    python benchmarks/ptq_resnet18_time.py --threads 2 \
        --num-images 256 --iters 100 --size 224
"""

import argparse
import json
import os.path as osp
import time

import mmpretrain
import torch
from machine_load import LoadRecord, add_load_argument
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant.ptq import calibrate_ranges, reconstruct
from mmcompress.registry import MODELS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=256)
    parser.add_argument('--iters', type=int, default=100)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=1, help='torch threads')
    add_load_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    DefaultScope.get_instance('ptq_r18_time', scope_name='mmpretrain')
    configs = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs')
    float_model = Config.fromfile(
        osp.join(configs, '_base_', 'models', 'resnet18.py')
    ).model
    model = MODELS.build(
        dict(
            type='QuantizedModel',
            model=float_model,
            quant=dict(
                w=dict(type='LSQQuantizer', bits=4, signed=True, per_channel=True),
                a=dict(type='LSQQuantizer', bits=4),
            ),
        )
    ).eval()
    torch.manual_seed(0)
    batches = [
        dict(inputs=torch.randn(args.batch_size, 3, args.size, args.size))
        for _ in range(max(1, args.num_images // args.batch_size))
    ]
    load = LoadRecord(args.allow_loaded, threads=args.threads)
    start = time.time()
    calibrate_ranges(
        model, batches, dict(type='MSEObserver'), dict(type='MSEObserver'), False
    )
    calibrated = time.time()
    reconstruct(
        model,
        batches,
        units=[r're:backbone\.layer\d+\.\d+'],
        iters=args.iters,
        batch_size=args.batch_size,
        progress=False,
    )
    end = time.time()
    load.stop()
    print(
        json.dumps(
            dict(
                **vars(args),
                calibration_s=round(calibrated - start, 1),
                reconstruction_s=round(end - calibrated, 1),
                total_s=round(end - start, 1),
                load=load.markdown(),
            )
        )
    )


if __name__ == '__main__':
    main()
