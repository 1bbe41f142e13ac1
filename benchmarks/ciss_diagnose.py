"""Where the new classes of a finished CISS sequence stand (DKD, sigmoid).

    python benchmarks/ciss_diagnose.py work_dirs/ciss_bench/seed0/dkd \\
        work_dirs/ciss_bench/seed0/bce_kd [--images 96]

For each sequence directory (``tools/ciss.py --work-dir``): the auxiliary
classifier's logits on the step-0 features and, after every later step but
the last, on that step's features (where the next step's aux-initialised head
starts), the cosine similarity of the two
rows of each new head after the last step, and, on the first ``--images``
``val`` images of ``data/scenes/seg_bench``, per class of the last steps the
mean sigmoid score of every class on that class's pixels and how many of its
pixels the official rule (a class only where its score exceeds 0.5) gives to
it.
"""

import argparse
import glob
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # noqa: E402

from mmcompress.registry import MODELS  # noqa: E402

DATA = osp.join(REPO, 'data', 'scenes', 'seg_bench')


def load(step_dir: str):
    """The model of a finished step, in eval mode."""
    cfg = Config.fromfile(glob.glob(osp.join(step_dir, 'step*.py'))[0])
    with open(osp.join(step_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    model.load_state_dict(state['state_dict'])
    return model.eval()


def val_batch(count: int):
    images = sorted(glob.glob(osp.join(DATA, 'images', 'val', '*.png')))[:count]
    inputs = [
        torch.from_numpy(np.array(Image.open(p).convert('RGB'))).permute(2, 0, 1)
        for p in images
    ]
    labels = [np.array(Image.open(p.replace('images', 'labels'))) for p in images]
    return inputs, torch.from_numpy(np.stack(labels)).long()


def report(work_dir: str, inputs, labels) -> None:
    steps = sorted(glob.glob(osp.join(work_dir, 'step*', 'last_checkpoint')))
    first, last = (load(osp.dirname(steps[i])) for i in (0, -1))
    with torch.no_grad():
        data = first.data_preprocessor(dict(inputs=inputs), False)['inputs']
        aux = first._forward(data)[:, 0]
        logits = last._forward(last.data_preprocessor(dict(inputs=inputs))['inputs'])
    print(f'{work_dir}: auxiliary logit on step-0 features mean {aux.mean():.2f}')
    print(f'  (min {aux.min():.2f}, max {aux.max():.2f})')
    for path in steps[1:-1]:  # the start of every later step's new head
        model = load(osp.dirname(path))
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=inputs), False)['inputs']
            aux = model._forward(data)[:, 0]
        print(
            f'  after {osp.basename(osp.dirname(path))}: auxiliary logit mean '
            f'{aux.mean():.2f} (max {aux.max():.2f})'
        )
    for index, head in enumerate(last.classifier.heads[2:], start=2):
        rows = head.weight.flatten(1)
        if len(rows) == 2:
            cos = torch.cosine_similarity(rows[0], rows[1], dim=0)
            print(f'  heads.{index}: cosine of its two rows {cos:.3f}')
    score = torch.nn.functional.interpolate(
        logits, size=labels.shape[-2:], mode='bilinear'
    ).sigmoid()[:, 1:]
    pred = score.argmax(1) + 1
    pred[(score > 0.5).sum(1) == 0] = 0
    for cls in range(1 + last.sizes[0], 1 + sum(last.sizes)):
        mask = labels == cls
        means = score.permute(1, 0, 2, 3)[:, mask].mean(1)
        got = int((pred[mask] == cls).sum())
        print(
            f'  class {cls}: {got} of {int(mask.sum())} pixels predicted; mean '
            'scores ' + ' '.join(f'{v:.2f}' for v in means.tolist())
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--images', type=int, default=96)
    args = parser.parse_args()
    inputs, labels = val_batch(args.images)
    for work_dir in args.work_dirs:
        report(work_dir, inputs, labels)


if __name__ == '__main__':
    main()
