"""Pseudo-label quality on the target scenes: GMM (K=8) vs K=1 vs softmax threshold.

A source-trained segmentor (``--checkpoint``) labels the first ``--num-images``
target ``train`` images three ways (``mmcompress.adapt``): per-class diagonal GMMs
on its decoder features (fitted on correctly predicted pixels of the first
``--num-images`` source ``train`` images; the seeds vary this sampling and the
k-means starts), one isotropic prototype (class mean) per class, and its own
softmax. For each coverage (share of target pixels kept, the best-scoring ones)
the pseudo-labels are scored against the target's true labels (evaluation only):
pixel accuracy and mIoU. ``--gmm-eps`` fits one GMM per variance floor (official:
1e-6); every rule is also scored by its argmax on the labelled *source* ``val``
split (``source_val_rules``: a held-out check that needs no target label, e.g. to
choose the floor). Also reports the source-only model's mIoU on the source and
target ``val`` splits and draws pseudo-label maps of a few target images.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bismap_pseudo_labels.py \
        --checkpoint work_dirs/fcn_r18-w16_scenes/iter_2000.pth \
        [--coverages 0.4 0.6 0.8 1.0] [--seeds 0 1 2] [--num-images 400] \
        [--target-root data/scenes/seg_bench_target_s0.75] [--gmm-eps 1e-6 0.1] \
        [--out result.json] [--figure docs/adapt/bismap_pseudo_labels.png]
"""

import argparse
import glob
import json
import os.path as osp
import sys
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mmcompress.adapt import (
    ClassFeatureBank,
    class_means,
    fit_class_gmms,
    label_quality,
    prototype_scores,
    threshold_at_coverage,
)
from mmcompress.adapt.segmentor import decode_with_features

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from machine_load import loadavg  # noqa: E402

CONFIG = 'configs/baselines/mmseg/fcn_r18-w16_scenes.py'
PALETTE = np.array(
    [[0, 0, 0], [220, 20, 60], [119, 11, 32], [0, 0, 142], [0, 0, 230],
     [106, 0, 228], [0, 60, 100], [0, 80, 100], [0, 0, 70], [0, 0, 192],
     [250, 170, 30]],
    np.uint8,
)  # fmt: skip


def load_split(root, split):
    """Images ``(N, H, W, 3)`` RGB and labels ``(N, H, W)`` of a scenes split."""
    paths = sorted(glob.glob(osp.join(root, 'images', split, '*.png')))
    imgs = np.stack([cv2.imread(p)[..., ::-1] for p in paths])
    labels = np.stack(
        [
            cv2.imread(p.replace('/images/', '/labels/'), cv2.IMREAD_UNCHANGED)
            for p in paths
        ]
    )
    return imgs, labels


@torch.no_grad()
def extract(model, imgs, batch=32):
    """``(logits, features)`` of all images at the decoder resolution."""
    pre = model.data_preprocessor
    logits, feats = [], []
    for start in range(0, len(imgs), batch):
        x = torch.from_numpy(imgs[start : start + batch].copy()).permute(0, 3, 1, 2)
        x = (x.float() - pre.mean) / pre.std
        lg, ft = decode_with_features(model.decode_head, model.extract_feat(x))
        logits.append(lg)
        feats.append(ft)
    return torch.cat(logits), torch.cat(feats)


def fit_models(source, labels, num_classes, components, seed, max_per_class, eps):
    """GMMs (one per variance floor in ``eps``) and class means from correctly
    predicted source pixels."""
    logits, feats = source
    bank = ClassFeatureBank(num_classes, max_per_class=max_per_class, seed=seed)
    lab = torch.from_numpy(labels).float()[:, None]
    lab = F.interpolate(lab, feats.shape[2:], mode='nearest').flatten()
    flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
    bank.push(flat, lab.long(), logits.argmax(1).flatten())
    features = bank.features()
    gmms = {e: fit_class_gmms(features, components, seed=seed, eps=e) for e in eps}
    return gmms, class_means(features)


def gmm_rule(eps):
    """Name of the GMM rule with variance floor ``eps``."""
    return f'gmm_eps{eps:g}'


@torch.no_grad()
def score_target(target, size, gmms, means, batch=16):
    """Best score and label per target pixel (image size) for each rule."""
    out = {k: ([], []) for k in ['softmax', 'prototype'] + list(map(gmm_rule, gmms))}
    for logits, feats in zip(target[0].split(batch), target[1].split(batch)):
        up = F.interpolate(feats, size, mode='bilinear', align_corners=True)
        flat = up.permute(0, 2, 3, 1).reshape(-1, up.shape[1])
        prob = F.interpolate(logits, size, mode='bilinear', align_corners=False)
        prob = prob.softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        scores = dict(softmax=prob, prototype=prototype_scores(flat, means))
        for eps, gmm in gmms.items():
            scores[gmm_rule(eps)] = gmm.log_likelihood(flat)
        for key, s in scores.items():
            best, lab = s.max(1)
            out[key][0].append(best)
            out[key][1].append(lab)
    return {k: (torch.cat(b), torch.cat(lab)) for k, (b, lab) in out.items()}


def evaluate(model, root, split, num_classes):
    """mIoU of the model's argmax on a split."""
    imgs, labels = load_split(root, split)
    logits, _ = extract(model, imgs)
    pred = F.interpolate(logits, imgs.shape[1:3], mode='bilinear', align_corners=False)
    return label_quality(pred.argmax(1), torch.from_numpy(labels), num_classes)


def draw(imgs, gt, rows, path, count=4):
    """Image | truth | one map per rule, with a title row; ignored pixels white."""

    def colour(lab):
        lab = lab.numpy() if torch.is_tensor(lab) else lab
        rgb = PALETTE[np.clip(lab, 0, len(PALETTE) - 1)]
        rgb[lab == 255] = 255
        return rgb

    lines = []
    for i in range(count):
        cells = [imgs[i], colour(gt[i])] + [colour(r[i]) for r in rows.values()]
        lines.append(
            np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0))) for c in cells], 1)
        )
    grid = np.concatenate(lines, 0)
    names = ['image', 'truth'] + list(rows)
    head = np.full((18, grid.shape[1], 3), 255, np.uint8)
    step = grid.shape[1] // len(names)
    for i, name in enumerate(names):
        cv2.putText(head, name, (i * step + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1)
    cv2.imwrite(path, np.concatenate([head, grid], 0)[..., ::-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--source-root', default='data/scenes/seg_bench')
    parser.add_argument('--target-root', default='data/scenes/seg_bench_target')
    parser.add_argument(
        '--coverages', type=float, nargs='+', default=[0.4, 0.6, 0.8, 1.0]
    )
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--components', type=int, default=8)
    parser.add_argument(
        '--gmm-eps',
        type=float,
        nargs='+',
        default=[1e-6],
        help='GMM variance floors, one GMM rule each (official 1e-6)',
    )
    parser.add_argument('--max-per-class', type=int, default=20000)
    parser.add_argument(
        '--num-images', type=int, default=400, help='first N train images per domain'
    )
    parser.add_argument('--out')
    parser.add_argument('--figure')
    parser.add_argument('--figure-coverage', type=float, default=0.6)
    args = parser.parse_args()
    from mmseg.apis import init_model  # after mmcompress (its torchvision fix)

    model = init_model(args.config, args.checkpoint, device='cpu').eval()
    num_classes = model.decode_head.num_classes
    result = dict(
        loadavg_before=loadavg(),
        source_val=evaluate(model, args.source_root, 'val', num_classes),
        target_val=evaluate(model, args.target_root, 'val', num_classes),
        runs=[],
    )
    n = args.num_images
    src_imgs, src_labels = (a[:n] for a in load_split(args.source_root, 'train'))
    tgt_imgs, tgt_labels = (a[:n] for a in load_split(args.target_root, 'train'))
    gt = torch.from_numpy(tgt_labels).flatten()
    source, target = extract(model, src_imgs), extract(model, tgt_imgs)
    val_imgs, val_labels = load_split(args.source_root, 'val')
    source_val = extract(model, val_imgs)
    result['source_val_rules'] = []
    for seed in args.seeds:
        start = time.perf_counter()
        gmms, means = fit_models(
            source,
            src_labels,
            num_classes,
            args.components,
            seed,
            args.max_per_class,
            args.gmm_eps,
        )
        on_source = score_target(source_val, val_imgs.shape[1:3], gmms, means)
        val_gt = torch.from_numpy(val_labels).flatten()
        for rule, (_, lab) in on_source.items():
            q = label_quality(lab, val_gt, num_classes)
            result['source_val_rules'].append(dict(seed=seed, rule=rule, **q))
        scored = score_target(target, tgt_imgs.shape[1:3], gmms, means)
        for cov in args.coverages:
            for rule, (best, lab) in scored.items():
                thr = threshold_at_coverage(best, cov)
                pl = torch.where(best >= thr, lab, 255)
                q = label_quality(pl, gt, num_classes)
                result['runs'].append(dict(seed=seed, rule=rule, kept=cov, **q))
        result.setdefault('seconds', []).append(round(time.perf_counter() - start, 1))
        if args.figure and seed == args.seeds[0]:
            rows = {}
            for rule, (best, lab) in scored.items():
                thr = threshold_at_coverage(best, args.figure_coverage)
                rows[rule] = torch.where(best >= thr, lab, 255).view(tgt_labels.shape)
            rows = {'source-only': scored['softmax'][1].view(tgt_labels.shape), **rows}
            draw(tgt_imgs, tgt_labels, rows, args.figure)
    result['loadavg_after'] = loadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)


if __name__ == '__main__':
    main()
