"""Attention maps of OICR and OICR + CASD on held-out scene images, as one PNG
for docs/models/casd.md.

Per image (a val image of the scenes ``bench`` split, its garment boxes drawn):
the RoI-level attention ``sigmoid(mean_c(F))`` (CASD's layer-wise attention) of
each checkpoint on the original image, and the comprehensive attention (the
element-wise maximum over the 2 scales x 2 flips views, aligned) of each.

Usage::

    RUNS=work_dirs/casd_scenes/250it
    python benchmarks/casd_picture.py \
        --oicr $RUNS/oicr_seed0/iter_250.pth --casd $RUNS/casd_seed0/iter_250.pth \
        --out docs/models/casd_attention.png
"""

import argparse
import json
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from PIL import Image  # noqa: E402

import mmcompress  # noqa: E402, F401  (registers OICR)
from mmcompress.models.wsod import comprehensive_attention  # noqa: E402

CONFIGS = dict(
    oicr='configs/wsod/mmdet/oicr_r18-w32_scenes.py',
    casd='configs/wsod/mmdet/oicr-casd_r18-w32_scenes.py',
)
ROOT = 'data/scenes/det_bench/'


def load(config: str, checkpoint: str):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    model = MODELS.build(Config.fromfile(config).model)
    load_checkpoint(model, checkpoint, map_location='cpu')
    return model.eval()


def attentions(model, image: np.ndarray):
    """(plain attention, comprehensive attention) at the RoI level."""
    data = dict(inputs=[torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)])
    inputs = model.data_preprocessor(data, False)['inputs']
    maps, flips = [], []
    for scale, flip in model.views:
        view, _ = model.view(inputs, [torch.zeros(1, 4)], scale, flip)
        level = model.extract_feat(view)[model.roi_level]
        maps.append(torch.sigmoid(level.mean(1)))
        flips.append(flip)
    return maps[0][0], comprehensive_attention(maps, flips)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--oicr', required=True)
    parser.add_argument('--casd', required=True)
    parser.add_argument('--images', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    models = dict(oicr=load(CONFIGS['oicr'], args.oicr))
    models['casd'] = load(CONFIGS['casd'], args.casd)
    ann = json.load(open(osp.join(ROOT, 'annotations/instances_val.json')))
    columns = [
        'image',
        'OICR',
        'OICR + CASD',
        'OICR comprehensive',
        'CASD comprehensive',
    ]
    fig, axes = plt.subplots(len(args.images), 5, figsize=(12, 2.6 * len(args.images)))
    for row, index in zip(np.atleast_2d(axes), args.images):
        info = ann['images'][index]
        image = np.array(Image.open(osp.join(ROOT, 'images/val', info['file_name'])))
        image = image[..., :3][..., ::-1]  # BGR as LoadImageFromFile
        with torch.no_grad():
            plain = {k: attentions(m, image) for k, m in models.items()}
        panels = [
            image[..., ::-1],
            plain['oicr'][0],
            plain['casd'][0],
            plain['oicr'][1],
            plain['casd'][1],
        ]
        for ax, panel, title in zip(row, panels, columns):
            if isinstance(panel, np.ndarray):
                ax.imshow(panel)
                for a in ann['annotations']:
                    if a['image_id'] == info['id']:
                        x, y, w, h = a['bbox']
                        ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color='y'))
            else:
                ax.imshow(panel.numpy(), cmap='jet')  # own min-max per panel
            ax.set_title(title, fontsize=9)
            ax.axis('off')
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
