"""Wall time of W4A4 calibration + unit-wise reconstruction of an ImageNet-size
ResNet-18 (mmpretrain's ``_base_/models/resnet18.py``, the 8 BasicBlocks as units).

Only the time is measured: the weights are the random initialisation and the
images are random 224 x 224 tensors (no ImageNet here), which costs the same
arithmetic as real ones. The load average of the machine is printed before and
after: on a shared machine the time is not a speed measurement.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/ptq_resnet18_time.py \
        --num-images 256 --iters 100 --size 224
"""

import argparse
import json
import os.path as osp
import time

import mmpretrain
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant.ptq import calibrate_ranges, reconstruct
from mmcompress.registry import MODELS


def loadavg() -> str:
    with open('/proc/loadavg') as file:
        return ' '.join(file.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=256)
    parser.add_argument('--iters', type=int, default=100)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--size', type=int, default=224)
    args = parser.parse_args()
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
    before = loadavg()
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
    print(
        json.dumps(
            dict(
                **vars(args),
                threads=torch.get_num_threads(),
                calibration_s=round(calibrated - start, 1),
                reconstruction_s=round(end - calibrated, 1),
                total_s=round(end - start, 1),
                loadavg_before=before,
                loadavg_after=loadavg(),
            )
        )
    )


if __name__ == '__main__':
    main()
