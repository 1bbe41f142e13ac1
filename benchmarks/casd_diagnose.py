"""Does the OICR detector learn to classify the scenes, before localising them?

Trains the MIDN of ``configs/wsod/mmdet/oicr_r18-w32_scenes.py`` (one view, the
config's optimiser settings: AdamW, weight decay 1e-4, gradient norm clipped at
10, linear warm-up over 50 iterations, then a constant ``--lr``) with a plain
loop on the ``train`` images of the scenes ``bench`` split, each run once
through the config's training pipeline without ``RandomFlip`` (fixed
proposals, cached in memory: about 6x faster than the stock loop, whose
Felzenszwalb proposals are recomputed every iteration). Every ``--every``
iterations it prints the mean ``loss_midn`` since the last report, and on the
first ``--val`` val images the image-level mAP of the MIDN image scores
(:class:`ImageLevelAPMetric`'s AP) and the MIDN's CorLoc (top proposal of each
class present, IoU >= 0.5). Chance: image-level mAP about 23 % (the class
frequencies), ``loss_midn`` 5.30 for scores equal to the training class
frequencies.

Usage::

    python benchmarks/casd_diagnose.py --iters 3000
    python benchmarks/casd_diagnose.py --iters 3000 \\
        --init work_dirs/fmnist-pretrain_r18-w32/iter_1500.pth
    python benchmarks/casd_diagnose.py --iters 1000 --every 250 \\
        --config configs/wsod/mmdet/<an OICR config> --init <classifier checkpoint>
    python benchmarks/casd_diagnose.py --iters 1000 --every 250 --eval-first \\
        --init <LSE classifier checkpoint> --cell-streams cls \\
        --cell-init <LSE classifier checkpoint>

``--cell-streams`` / ``--cell-init`` set the head's ``cell_streams`` /
``cell_init`` (:class:`OICRHead`: MIDN streams as the classifier's linear
layer at every RoI cell, log-sum-exp pooled over the cells, started from the
classifier's ``fc``); ``--eval-first`` also evaluates before the first
iteration.
"""

import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from scenes_baselines import REPO_ROOT  # noqa: E402

CONFIG = osp.join(REPO_ROOT, 'configs', 'wsod', 'mmdet', 'oicr_r18-w32_scenes.py')


def cached_samples(cfg: Config, split: str, pipeline: list, num: Optional[int]):
    """The first ``num`` images of ``split`` run once through ``pipeline``."""
    from mmdet.registry import DATASETS

    dataset = cfg.train_dataloader.dataset
    dataset = DATASETS.build(
        dict(
            type=dataset.type,
            data_root=osp.join(REPO_ROOT, dataset.data_root),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'images/{split}/'),
            pipeline=pipeline,
            test_mode=split == 'val',
            indices=num,
        )
    )
    return [dataset[i] for i in range(len(dataset))]


def load_backbone(model: torch.nn.Module, checkpoint: str) -> None:
    """Load the ``backbone.*`` weights of ``checkpoint`` into ``model.backbone``
    (strict: every backbone weight must be there).

    Args:
        model (nn.Module): A detector with a ``backbone``.
        checkpoint (str): An mmengine checkpoint (a classifier's or a detector's).
    """
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    model.backbone.load_state_dict(
        {
            k[len('backbone.') :]: v
            for k, v in state['state_dict'].items()
            if k.startswith('backbone.')
        }
    )


def evaluate(model, val: List[dict]) -> tuple:
    """(image-level mAP %, MIDN CorLoc %) on the cached val samples."""
    from mmcompress.models.wsod import average_precision, corloc_hits

    model.eval()
    scores, positives, hits = [], [], []
    with torch.no_grad():
        for start in range(0, len(val), 10):
            data = model.data_preprocessor(pseudo_collate(val[start : start + 10]))
            feats = model.extract_feat(data['inputs'])
            boxes = [s.proposals.bboxes.float() for s in data['data_samples']]
            midn, _ = model.head(model.rois(feats, boxes), [len(b) for b in boxes])
            for sample, proposal_scores, image_scores, props in zip(
                data['data_samples'], midn, model.head.image_scores(midn), boxes
            ):
                gt = sample.gt_instances
                scores.append(image_scores.numpy())
                positives.append(np.isin(np.arange(len(image_scores)), gt.labels))
                best, labels = proposal_scores.max(1)
                gt_boxes = getattr(gt.bboxes, 'tensor', gt.bboxes)
                hits += corloc_hits(props, best, labels, gt_boxes, gt.labels)
    model.train()
    scores, positives = np.stack(scores), np.stack(positives)
    aps = [
        average_precision(scores[:, c], positives[:, c])
        for c in range(scores.shape[1])
        if positives[:, c].any()
    ]
    per_class = {}
    for cls, correct in hits:
        per_class.setdefault(cls, []).append(correct)
    corloc = np.mean([np.mean(v) for v in per_class.values()])
    return 100 * float(np.mean(aps)), 100 * float(corloc)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config', default=CONFIG, help='OICR config (model, pipelines, batch)'
    )
    parser.add_argument('--iters', type=int, default=3000)
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--init', help='checkpoint whose backbone.* to start from')
    parser.add_argument('--every', type=int, default=500)
    parser.add_argument('--val', type=int, default=100, help='val images evaluated')
    parser.add_argument('--train', type=int, help='train images (default: all)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--cell-streams',
        nargs='+',
        choices=['cls', 'det'],
        help="MIDN streams on the RoI cells (the head's cell_streams)",
    )
    parser.add_argument(
        '--cell-init', help='classifier checkpoint whose fc.* start the cell streams'
    )
    parser.add_argument(
        '--eval-first', action='store_true', help='also evaluate at iteration 0'
    )
    args = parser.parse_args(argv)
    if args.cell_init and not args.cell_streams:
        parser.error('--cell-init starts the cell streams: give --cell-streams too')
    from mmdet.registry import MODELS

    import mmcompress  # noqa: F401  (registers OICR, WSODProposals...)

    init_default_scope('mmdet')
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = Config.fromfile(args.config)
    cfg.model.update(view_scales=[1.0], view_flip=False)
    if args.cell_streams:
        cfg.model.head.update(cell_streams=args.cell_streams, cell_init=args.cell_init)
    pipeline = [t for t in cfg.train_pipeline if t['type'] != 'RandomFlip']
    train = cached_samples(cfg, 'train', pipeline, args.train)
    val = cached_samples(cfg, 'val', cfg.test_pipeline, args.val)
    model = MODELS.build(cfg.model)
    if args.init:
        load_backbone(model, args.init)
    if args.cell_init:
        model.head.init_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    batch_size, losses = cfg.train_dataloader.batch_size, []
    order = np.concatenate(
        [
            rng.permutation(len(train))
            for _ in range(args.iters * batch_size // len(train) + 1)
        ]
    )
    model.train()
    if args.eval_first:
        cls_map, corloc = evaluate(model, val)
        print(f'iter 0: image-level mAP {cls_map:.1f} % MIDN CorLoc {corloc:.1f} %')
    for it in range(1, args.iters + 1):
        for group in optimizer.param_groups:
            group['lr'] = args.lr * min(1.0, it / 50)
        picked = order[(it - 1) * batch_size : it * batch_size]
        data = model.data_preprocessor(pseudo_collate([train[i] for i in picked]), True)
        loss_dict = model.loss(data['inputs'], data['data_samples'])
        optimizer.zero_grad()
        sum(loss_dict.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
        optimizer.step()
        losses.append(loss_dict['loss_midn'].item())
        if it % args.every == 0 or it == args.iters:
            cls_map, corloc = evaluate(model, val)
            print(
                f'iter {it}: loss_midn {np.mean(losses[-args.every :]):.3f} '
                f'image-level mAP {cls_map:.1f} % MIDN CorLoc {corloc:.1f} %',
                flush=True,
            )


if __name__ == '__main__':
    main()
