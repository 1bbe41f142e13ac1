"""Generate the Fashion-MNIST-on-photos scenes for detection, segmentation or pose.

Examples::

    python tools/generate_scenes.py --task det --split small
    python tools/generate_scenes.py --task seg --split bench --domain target
    python tools/generate_scenes.py --task seg --split bench --domain target \
        --shift-strength 0.5
    python tools/generate_scenes.py --task pose --split bench --out /tmp/pose \
        --seed 3 --image-size 160 --max-objects 5

Without ``--out`` the data go to ``data/scenes/<task>_<split>[_target]`` (below shift
strength 1: ``_target_s<strength>``) under the repository root, where the configs in
``configs/_base_/datasets/scenes_*.py`` look.
See docs/scenes.md for the format and the provenance of the image content.
"""

import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` when None.

    Returns:
        argparse.Namespace: The parsed options.
    """
    parser = argparse.ArgumentParser(
        description='Compose Fashion-MNIST garments onto scikit-image photos '
        'and write COCO / label-map / COCO-keypoint annotations.'
    )
    parser.add_argument('--task', required=True, choices=['det', 'seg', 'pose'])
    parser.add_argument('--split', default='small', choices=['small', 'bench'])
    parser.add_argument(
        '--out',
        help='output data root (default: data/scenes/<task>_<split>'
        '[_target[_s<strength>]] in the repository)',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--domain', default='source', choices=['source', 'target'])
    parser.add_argument(
        '--shift-strength',
        type=float,
        default=1.0,
        help='target domain only: strength of the shift in (0, 1]; 1 is the '
        'full target style, smaller values blend it towards the source style',
    )
    parser.add_argument('--num-train', type=int, help='train images')
    parser.add_argument('--num-val', type=int, help='val images')
    parser.add_argument('--image-size', type=int, help='square image side')
    parser.add_argument('--min-objects', type=int)
    parser.add_argument('--max-objects', type=int)
    parser.add_argument('--min-item-size', type=int, help='smallest garment side (px)')
    parser.add_argument('--max-item-size', type=int, help='largest garment side (px)')
    parser.add_argument(
        '--min-visible-fraction',
        type=float,
        help='least visible share of an occluded garment',
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Generate one data root and print a summary."""
    args = parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    from mmcompress.datasets.scenes.writers import default_data_root, generate_scenes

    try:
        out_dir = args.out or osp.join(
            REPO_ROOT,
            default_data_root(args.task, args.split, args.domain, args.shift_strength),
        )
    except ValueError as error:
        raise SystemExit(f'generate_scenes.py: error: {error}') from error
    scene_options = {
        name: getattr(args, name)
        for name in (
            'image_size',
            'min_objects',
            'max_objects',
            'min_item_size',
            'max_item_size',
            'min_visible_fraction',
        )
        if getattr(args, name) is not None
    }
    try:
        meta = generate_scenes(
            args.task,
            out_dir,
            split=args.split,
            seed=args.seed,
            domain=args.domain,
            num_train=args.num_train,
            num_val=args.num_val,
            shift_strength=args.shift_strength,
            **scene_options,
        )
    except ValueError as error:
        raise SystemExit(f'generate_scenes.py: error: {error}') from error
    print(
        f'wrote {out_dir}: {meta["num_images"]} images, '
        f'{meta["num_instances"]} garments in {meta["seconds"]} s'
    )


if __name__ == '__main__':
    main()
