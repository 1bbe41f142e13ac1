"""Decompose a trained model's convs to a FLOPs target.

Writes, into ``--out-dir`` (default ``work_dirs/<config>_<method>_r<ratio>``):

* ``plan.json``: per-layer method and ranks;
* ``decomposed.pth``: the decomposed weights (initialised from CHECKPOINT);
* ``<config>_<method>_r<ratio>.py``: a config of the decomposed model
  (``model = dict(type='DecomposedModel', model=<yours>, plan=...)`` and
  ``load_from`` = ``decomposed.pth``), ready for the stock ``tools/train.py``
  (fine-tuning) and ``tools/test.py``; use it as a DistillModel student with
  the original model as teacher for the KD fine-tune;

and prints one JSON line (FLOPs of the model and of the selected layers
before / after, layers decomposed). ``--include 'backbone.*' --flops-of
selected --flops-ratio 0.5`` halves a detector's backbone and leaves its neck
and head as they are.

Example::

    python tools/decompose.py configs/decompose/mmpretrain/resnet18-w16_fmnist.py \\
        work_dirs/resnet18-w16_fmnist/epoch_4.pth --flops-ratio 0.2 \\
        --method group --shape 1 1 28 28
"""

import argparse
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import load_checkpoint, save_checkpoint

import mmcompress  # noqa: F401  (compatibility fixes and registration first)
from mmcompress.decompose import (
    FLOPS_OF,
    METHODS,
    apply_plan,
    count_flops,
    plan_decomposition,
    select_convs,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(description='Decompose convs to a FLOPs target')
    parser.add_argument('config', help='config of the trained model')
    parser.add_argument('checkpoint', help='its trained checkpoint')
    parser.add_argument(
        '--flops-ratio',
        type=float,
        required=True,
        help='FLOPs to keep, as a fraction of the model (0.2 = -80%%)',
    )
    parser.add_argument('--method', default='group', choices=METHODS)
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[1, 3, 224, 224],
        help='input shape N C H W that sizes the feature maps',
    )
    parser.add_argument(
        '--include',
        nargs='+',
        default=['*'],
        help="layer name patterns to decompose (e.g. 'backbone.*')",
    )
    parser.add_argument('--exclude', nargs='+', default=[])
    parser.add_argument(
        '--flops-of',
        default='model',
        choices=FLOPS_OF,
        help='what --flops-ratio is a fraction of: the whole model (default) or '
        'only the layers --include / --exclude select (a backbone at -50%%)',
    )
    parser.add_argument('--out-dir', help='output folder')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings'
    )
    return parser


def fail(message: str) -> None:
    """Exit with one line on stderr (a user mistake)."""
    sys.exit(f'decompose.py: error: {message}')


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if not osp.isfile(args.checkpoint):
        fail(f'checkpoint {args.checkpoint} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    DefaultScope.get_instance(
        'decompose', scope_name=cfg.get('default_scope', 'mmengine')
    )
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.eval()
    example = (torch.randn(*args.shape),)
    try:
        selected = select_convs(model, args.include, args.exclude)
        before = count_flops(model, example)
        plan = plan_decomposition(
            model,
            example,
            args.flops_ratio,
            args.method,
            args.include,
            args.exclude,
            args.flops_of,
        )
    except (ValueError, RuntimeError) as error:
        fail(str(error))
    apply_plan(model, plan)
    after = count_flops(model, example)
    stem = osp.splitext(osp.basename(args.config))[0]
    name = f'{stem}_{args.method}_r{args.flops_ratio:g}'
    out_dir = args.out_dir or osp.join('work_dirs', name)
    os.makedirs(out_dir, exist_ok=True)
    weights = osp.join(out_dir, 'decomposed.pth')
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict(plan=plan)), weights)
    with open(osp.join(out_dir, 'plan.json'), 'w') as handle:
        json.dump(plan, handle, indent=1)
    cfg.model = dict(type='DecomposedModel', model=cfg.model.to_dict(), plan=plan)
    cfg.load_from = weights
    cfg.dump(osp.join(out_dir, f'{name}.py'))
    # FLOPs of the selected layers: a decomposed layer counts its parts
    in_selection = [
        part
        for part in after
        if any(part == layer or part.startswith(layer + '.') for layer in selected)
    ]
    selected_before = sum(
        before[layer]['flops'] for layer in selected if layer in before
    )
    selected_after = sum(after[part]['flops'] for part in in_selection)
    total_before = sum(entry['flops'] for entry in before.values())
    total_after = sum(entry['flops'] for entry in after.values())
    result = dict(
        method=args.method,
        flops_of=args.flops_of,
        flops_before=total_before,
        flops_after=total_after,
        ratio=round(total_after / total_before, 4),
        selected_flops_before=selected_before,
        selected_flops_after=selected_after,
        selected_ratio=round(selected_after / max(selected_before, 1), 4),
        layers=len(plan),
        out_dir=out_dir,
    )
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
