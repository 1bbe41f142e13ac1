"""A held-out photo crop super-resolved by bicubic / FSRCNN / the PISR student,
next to the HR original, written as one PNG for docs/models/pisr.md.

Usage::

    RUNS=work_dirs/pisr_photos/x2_1200it_b4
    python benchmarks/pisr_picture.py \
        --fsrcnn $RUNS/FSRCNN_seed0/iter_1200.pth \
        --pisr $RUNS/PISR_student_seed0/iter_1200_student.pth \
        --out docs/models/pisr_crop.png
"""

import argparse

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mmcompress.datasets import SRPhotoDataset
from mmcompress.models.sr import FSRCNN
from mmcompress.models.sr.metrics import psnr, to_8bit


def load(path: str, scale: int) -> FSRCNN:
    model = FSRCNN(scale=scale)
    state = torch.load(path, map_location='cpu', weights_only=False)['state_dict']
    model.load_state_dict(state)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--fsrcnn', required=True)
    parser.add_argument('--pisr', required=True)
    parser.add_argument('--photo', default='chelsea')
    parser.add_argument('--scale', type=int, default=2)
    parser.add_argument('--box', type=int, nargs=3, default=[60, 150, 120])
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    item = SRPhotoDataset(scale=args.scale, photos=[args.photo])[0]
    lr, hr = item['inputs'][None], item['data_samples'].gt_img
    with torch.no_grad():
        outputs = {
            'bicubic': F.interpolate(lr, scale_factor=args.scale, mode='bicubic')[0],
            'FSRCNN': load(args.fsrcnn, args.scale)(lr)[0],
            'PISR student': load(args.pisr, args.scale)(lr)[0],
            'HR': hr,
        }
    y, x, size = args.box
    tiles = []
    for name, image in outputs.items():
        crop = to_8bit(image[0, y : y + size, x : x + size])
        value = psnr(crop, to_8bit(hr[0, y : y + size, x : x + size]))
        tile = cv2.resize(
            crop.numpy().astype(np.uint8),
            None,
            fx=2,
            fy=2,
            interpolation=cv2.INTER_NEAREST,
        )
        tile = np.pad(tile, ((28, 4), (4, 4)), constant_values=255)
        label = name if name == 'HR' else f'{name} {value:.2f} dB'
        cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 0, 1)
        tiles.append(tile)
    cv2.imwrite(args.out, np.concatenate(tiles, axis=1))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
