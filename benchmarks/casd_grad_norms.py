"""How strongly do the CASD terms act on the detector, next to the OICR losses?

Builds an OICR + CASD config (default: the clslse-init CASD config), starts it
as a training run would (the backbone from ``--init``'s ``backbone.*``, the
head's ``cell_init``) or from a trained detector ``--checkpoint``, and on
``--batches`` training batches (the config's pipeline without ``RandomFlip``
and its batch size; the detector's own views) prints for each term (the OICR
losses summed, ``loss_casd_iw``, ``loss_casd_lw``) its mean value and the mean
L2 norm of its gradient on the backbone and on all parameters. The weighted
loss of a term is small or large only relative to its gradient: this says
what share of an update each term has.

Usage::

    C=work_dirs/imgcls-lse_r18-w32-fmnistinit_scenes/iter_3000.pth
    python benchmarks/casd_grad_norms.py --flip-only --init $C \\
        --cell-streams cls --cell-init $C
    python benchmarks/casd_grad_norms.py --flip-only --cell-streams cls \\
        --checkpoint work_dirs/casd_scenes/<schedule>/casd_seed1/iter_700.pth
"""

import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from casd_diagnose import cached_samples, load_backbone  # noqa: E402
from scenes_baselines import REPO_ROOT  # noqa: E402

CONFIG = osp.join(
    REPO_ROOT, 'configs', 'wsod', 'mmdet', 'oicr-casd_r18-w32-clslseinit_scenes.py'
)


def term_gradients(
    model: torch.nn.Module, loss_dict: Dict[str, torch.Tensor]
) -> Dict[str, tuple]:
    """Per term (``oicr``: every non-CASD loss summed; each CASD loss): its
    value and the L2 norms of its gradient on the backbone and on all
    parameters.

    Args:
        model (nn.Module): The detector whose ``loss`` gave ``loss_dict``.
        loss_dict (dict): Its losses (one graph).

    Returns:
        dict: Term name to ``(value, backbone norm, all-parameter norm)``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    in_backbone = [n.startswith('backbone.') for n, _ in named]
    terms = {'oicr': sum(v for k, v in loss_dict.items() if 'casd' not in k)}
    terms.update({k: v for k, v in loss_dict.items() if 'casd' in k})
    out = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        squares = [0.0 if g is None else float(g.pow(2).sum()) for g in grads]
        backbone = sum(s for s, b in zip(squares, in_backbone) if b) ** 0.5
        out[name] = (float(value.detach()), backbone, sum(squares) ** 0.5)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=CONFIG, help='OICR + CASD config')
    parser.add_argument('--checkpoint', help='trained detector (all weights)')
    parser.add_argument('--init', help='checkpoint whose backbone.* to start from')
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
        '--flip-only', action='store_true', help='views: original and h-flip only'
    )
    parser.add_argument('--batches', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.checkpoint and (args.init or args.cell_init):
        parser.error('--checkpoint holds every weight: leave out --init/--cell-init')
    from mmdet.registry import MODELS
    from mmengine.runner import load_checkpoint

    import mmcompress  # noqa: F401  (registers OICR, WSODProposals...)

    init_default_scope('mmdet')
    torch.manual_seed(args.seed)
    cfg = Config.fromfile(args.config)
    if not (cfg.model.get('casd_iw') or cfg.model.get('casd_lw')):
        raise ValueError(f'{args.config} has no CASD loss (casd_iw / casd_lw)')
    if args.flip_only:
        cfg.model.view_scales = [1.0]
    if args.cell_streams:
        cfg.model.head.update(cell_streams=args.cell_streams, cell_init=args.cell_init)
    pipeline = [t for t in cfg.train_pipeline if t['type'] != 'RandomFlip']
    batch_size = cfg.train_dataloader.batch_size
    train = cached_samples(cfg, 'train', pipeline, args.batches * batch_size)
    model = MODELS.build(cfg.model)
    model.init_weights()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    elif args.init:
        load_backbone(model, args.init)
    model.train()
    rows: Dict[str, List[tuple]] = {}
    for start in range(0, len(train), batch_size):
        data = model.data_preprocessor(
            pseudo_collate(train[start : start + batch_size]), True
        )
        loss_dict = model.loss(data['inputs'], data['data_samples'])
        for name, values in term_gradients(model, loss_dict).items():
            rows.setdefault(name, []).append(values)
    print(f'{len(train)} images, views {list(model.views)}, batches of {batch_size}')
    print('term | loss | grad norm backbone | grad norm all | backbone / oicr')
    oicr_backbone = np.mean([r[1] for r in rows['oicr']])
    for name, values in rows.items():
        loss, backbone, total = np.mean(values, 0)
        print(
            f'{name} | {loss:.4g} | {backbone:.4g} | {total:.4g} | '
            f'{backbone / oicr_backbone:.3g}'
        )


if __name__ == '__main__':
    main()
