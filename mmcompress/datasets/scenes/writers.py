"""Write scenes in the formats mmdet, mmseg and mmpose read.

Layout of one generated data root (``train`` and ``val`` subsets):

* ``det``: ``images/<subset>/<id>.png`` and ``annotations/instances_<subset>.json``
  (COCO instances: ``bbox``, ``area``, ``iscrowd=0``, ``segmentation`` as
  uncompressed RLE of the visible mask, ten Fashion-MNIST categories, ids 1-10).
* ``seg``: ``images/<subset>/<id>.png`` and ``labels/<subset>/<id>.png``
  (``uint8`` label map: 0 background, 1-10 garment class + 1, 255 ignore).
* ``pose``: ``images/<subset>/<id>.png`` and ``annotations/keypoints_<subset>.json``
  (COCO keypoints, one category ``garment`` with the five garment keypoints;
  ``bbox`` is the whole garment's box, occluded parts included).

Every root also gets ``scenes_meta.json`` with the generation parameters and the
provenance of the image content. The ``train`` subset composes Fashion-MNIST
*train* items, the ``val`` subset *test* items.
"""

import json
import logging
import os
import os.path as osp
import re
import time
from dataclasses import asdict, fields
from typing import Dict, Iterator, List, Optional

import cv2
import numpy as np
from mmengine.logging import print_log

from .composer import (
    IGNORE_INDEX,
    STYLES,
    Scene,
    SceneOptions,
    compose_scene,
    domain_style,
)
from .keypoints import GARMENT_KEYPOINT_NAMES, GARMENT_SKELETON
from .sources import BACKGROUND_PHOTOS, FASHION_MNIST_CLASSES

TASKS = ('det', 'seg', 'pose')
SUBSETS = ('train', 'val')

# Image counts of the named splits; the scene geometry defaults to SceneOptions().
SPLIT_PRESETS: Dict[str, Dict[str, int]] = {
    'small': dict(num_train=48, num_val=24),
    'bench': dict(num_train=1600, num_val=320),
}

_SUBSET_CODES = {'train': 0, 'val': 1}
_ITEM_SPLITS = {'train': 'train', 'val': 'test'}
_DOMAIN_CODES = {'source': 0, 'target': 1}


def default_data_root(
    task: str, split: str, domain: str = 'source', shift_strength: float = 1.0
) -> str:
    """The repo-relative data root the configs expect for a task and split.

    Args:
        task (str): ``'det'``, ``'seg'`` or ``'pose'``.
        split (str): ``'small'`` or ``'bench'``.
        domain (str): ``'source'`` or ``'target'``.
        shift_strength (float): Target shift strength in (0, 1] (see
            :func:`domain_style`). Defaults to 1.0.

    Returns:
        str: e.g. ``'data/scenes/seg_bench'``, ``'data/scenes/seg_bench_target'``
        or, below strength 1, ``'data/scenes/seg_bench_target_s0.5'``.
    """
    _check_choice('task', task, TASKS)
    _check_choice('split', split, SPLIT_PRESETS)
    domain_style(domain, shift_strength)
    suffix = '_target' if domain == 'target' else ''
    if shift_strength != 1.0:
        suffix += f'_s{shift_strength:g}'
    return f'data/scenes/{task}_{split}{suffix}'


def _check_choice(what: str, given, valid) -> None:
    if given not in valid:
        raise ValueError(
            f'{what} {given!r} is not valid; choose one of {sorted(valid)}.'
        )


def iter_scenes(
    subset: str,
    count: int,
    seed: int,
    domain: str,
    options: SceneOptions,
    shift_strength: float = 1.0,
) -> Iterator[Scene]:
    """Compose the scenes of one subset, each from its own seeded generator.

    Args:
        subset (str): ``'train'`` or ``'val'``.
        count (int): Number of images.
        seed (int): Dataset seed.
        domain (str): ``'source'`` or ``'target'``.
        options (SceneOptions): Scene geometry.
        shift_strength (float): Target shift strength in (0, 1] (see
            :func:`domain_style`). Defaults to 1.0.

    Yields:
        Scene: Scene ``i`` depends only on (seed, subset, domain, i, options,
        shift_strength); its garments do not depend on ``shift_strength``.
    """
    _check_choice('subset', subset, SUBSETS)
    _check_choice('domain', domain, STYLES)
    style = domain_style(domain, shift_strength)
    for index in range(count):
        rng = np.random.default_rng(
            [seed, _SUBSET_CODES[subset], _DOMAIN_CODES[domain], index]
        )
        yield compose_scene(rng, options, style, _ITEM_SPLITS[subset])


def mask_to_rle(mask: np.ndarray) -> Dict:
    """Encode a binary mask as COCO uncompressed RLE.

    Args:
        mask (np.ndarray): Boolean (H, W).

    Returns:
        dict: ``{'size': [H, W], 'counts': [...]}``: run lengths over the
        column-major pixel order, starting with a (possibly empty) run of zeros.
    """
    flat = mask.ravel(order='F').astype(np.int8)
    starts = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], starts, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0] + runs
    return dict(size=[int(mask.shape[0]), int(mask.shape[1])], counts=runs)


def mask_to_bbox(mask: np.ndarray) -> List[float]:
    """COCO ``[x, y, w, h]`` tight box of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] + 1 - cols[0]),
        float(rows[-1] + 1 - rows[0]),
    ]


def _image_record(image_id: int, file_name: str, scene: Scene) -> Dict:
    height, width = scene.image.shape[:2]
    return dict(
        id=image_id,
        file_name=file_name,
        width=int(width),
        height=int(height),
        background=scene.background,
    )


def _provenance() -> Dict:
    return dict(
        objects='Fashion-MNIST (Zalando Research), MIT licence',
        backgrounds={
            name: dict(file=f'skimage/data/{file_name}', licence=licence)
            for name, (file_name, licence) in BACKGROUND_PHOTOS.items()
        },
    )


def _coco_info(
    task: str, subset: str, seed: int, domain: str, shift_strength: float
) -> Dict:
    strength = f', shift_strength={shift_strength:g}' if shift_strength != 1 else ''
    return dict(
        description=f'mmcompress fashion scenes ({task}, {subset}, '
        f'domain={domain}{strength}, seed={seed})',
        version='1.0',
        contributor='mmcompress tools/generate_scenes.py',
        **_provenance(),
    )


def _write_image(path: str, image: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f'OpenCV could not write {path}.')


def _detection_annotations(scene: Scene, image_id: int, first_id: int) -> List[Dict]:
    annotations = []
    for instance in scene.instances:
        visible = instance.visible_mask
        annotations.append(
            dict(
                id=first_id + len(annotations),
                image_id=image_id,
                category_id=instance.label + 1,
                bbox=mask_to_bbox(visible),
                area=float(visible.sum()),
                iscrowd=0,
                segmentation=mask_to_rle(visible),
            )
        )
    return annotations


def _pose_annotations(scene: Scene, image_id: int, first_id: int) -> List[Dict]:
    annotations = []
    for instance in scene.instances:
        keypoints = instance.keypoints
        annotations.append(
            dict(
                id=first_id + len(annotations),
                image_id=image_id,
                category_id=1,
                garment_class=instance.label,
                bbox=mask_to_bbox(instance.mask),
                area=float(instance.mask.sum()),
                iscrowd=0,
                num_keypoints=int((keypoints[:, 2] > 0).sum()),
                keypoints=[round(float(value), 3) for value in keypoints.ravel()],
            )
        )
    return annotations


def _categories(task: str) -> List[Dict]:
    if task == 'pose':
        index = {name: i + 1 for i, name in enumerate(GARMENT_KEYPOINT_NAMES)}
        return [
            dict(
                id=1,
                name='garment',
                supercategory='garment',
                keypoints=list(GARMENT_KEYPOINT_NAMES),
                skeleton=[[index[a], index[b]] for a, b in GARMENT_SKELETON],
            )
        ]
    return [
        dict(id=i + 1, name=name, supercategory='garment')
        for i, name in enumerate(FASHION_MNIST_CLASSES)
    ]


def _write_subset(
    task: str,
    out_dir: str,
    subset: str,
    count: int,
    seed: int,
    domain: str,
    options: SceneOptions,
    shift_strength: float,
) -> List[int]:
    """Write one subset; return the number of garments of each image."""
    image_dir = osp.join(out_dir, 'images', subset)
    os.makedirs(image_dir, exist_ok=True)
    if task == 'seg':
        label_dir = osp.join(out_dir, 'labels', subset)
        os.makedirs(label_dir, exist_ok=True)
    images, annotations = [], []
    per_image = []
    scenes = iter_scenes(subset, count, seed, domain, options, shift_strength)
    for index, scene in enumerate(scenes):
        file_name = f'{index:06d}.png'
        _write_image(osp.join(image_dir, file_name), scene.image)
        per_image.append(len(scene.instances))
        if task == 'seg':
            if not cv2.imwrite(osp.join(label_dir, file_name), scene.semantic_map()):
                raise OSError(f'OpenCV could not write a label map into {label_dir}.')
            continue
        image_id = index + 1
        images.append(_image_record(image_id, file_name, scene))
        if task == 'det':
            annotations.extend(
                _detection_annotations(scene, image_id, len(annotations) + 1)
            )
        else:
            annotations.extend(_pose_annotations(scene, image_id, len(annotations) + 1))
    if task != 'seg':
        stem = 'instances' if task == 'det' else 'keypoints'
        os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
        coco = dict(
            info=_coco_info(task, subset, seed, domain, shift_strength),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=_categories(task),
        )
        with open(
            osp.join(out_dir, 'annotations', f'{stem}_{subset}.json'), 'w'
        ) as handle:
            json.dump(coco, handle)
    return per_image


def _warn_if_short(per_image: Dict[str, List[int]], options: SceneOptions) -> None:
    """Warn when images hold fewer garments than ``min_objects`` asked for."""
    counts = [n for subset in SUBSETS for n in per_image[subset]]
    short = sum(n < options.min_objects for n in counts)
    if not short:
        return
    print_log(
        f'generate_scenes: min_objects={options.min_objects} was asked, but '
        f'{short} of {len(counts)} images hold fewer garments (fewest '
        f'{min(counts)}, mean {np.mean(counts):.1f}): a garment that cannot be '
        f'placed leaving every earlier one at least min_visible_fraction='
        f'{options.min_visible_fraction:g} visible within '
        f'max_placement_attempts={options.max_placement_attempts} draws is '
        f'dropped. On {options.image_size}x{options.image_size} images lower '
        'min_objects or min_visible_fraction, or raise image_size or lower '
        'max_item_size.',
        logger='current',
        level=logging.WARNING,
    )


def generate_scenes(
    task: str,
    out_dir: str,
    split: str = 'small',
    seed: int = 0,
    domain: str = 'source',
    num_train: Optional[int] = None,
    num_val: Optional[int] = None,
    shift_strength: float = 1.0,
    **scene_options,
) -> Dict:
    """Generate the train and val subsets of one task into ``out_dir``.

    Args:
        task (str): ``'det'``, ``'seg'`` or ``'pose'``.
        out_dir (str): Data root to write (created if missing).
        split (str): ``'small'`` or ``'bench'``: preset image counts.
        seed (int): Dataset seed; the same arguments give identical files.
        domain (str): ``'source'`` (colour photos, saturated garments) or
            ``'target'`` (grey textures with a colour cast, pale garments,
            noise).
        num_train (int, optional): Overrides the preset train image count.
        num_val (int, optional): Overrides the preset val image count.
        shift_strength (float): Strength of the target domain's shift in
            (0, 1]: 1 is the full target style, smaller values blend it towards
            the source style (see :func:`domain_style`). Must be 1 for the
            source domain. Defaults to 1.0.
        **scene_options: Fields of :class:`SceneOptions` (``image_size``,
            ``min_objects``, ``max_objects``, ``min_item_size``,
            ``max_item_size``, ...).

    Returns:
        dict: The content of the ``scenes_meta.json`` written into ``out_dir``.
    """
    _check_choice('task', task, TASKS)
    _check_choice('split', split, SPLIT_PRESETS)
    _check_choice('domain', domain, STYLES)
    domain_style(domain, shift_strength)
    valid_options = {item.name for item in fields(SceneOptions)}
    unknown = sorted(set(scene_options) - valid_options)
    if unknown:
        raise ValueError(
            f'Unknown scene options {unknown}; valid ones are {sorted(valid_options)}.'
        )
    options = SceneOptions(**scene_options)
    counts = dict(SPLIT_PRESETS[split])
    if num_train is not None:
        counts['num_train'] = num_train
    if num_val is not None:
        counts['num_val'] = num_val
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f'{name} must be >= 1, got {value}.')
    start = time.perf_counter()
    per_image = {
        subset: _write_subset(
            task,
            out_dir,
            subset,
            counts[f'num_{subset}'],
            seed,
            domain,
            options,
            shift_strength,
        )
        for subset in SUBSETS
    }
    _warn_if_short(per_image, options)
    instances = {subset: sum(n) for subset, n in per_image.items()}
    meta = dict(
        task=task,
        split=split,
        seed=seed,
        domain=domain,
        shift_strength=shift_strength,
        options=asdict(options),
        num_images={subset: counts[f'num_{subset}'] for subset in SUBSETS},
        num_instances=instances,
        classes=list(FASHION_MNIST_CLASSES),
        ignore_index=IGNORE_INDEX,
        seconds=round(time.perf_counter() - start, 2),
        **_provenance(),
    )
    with open(osp.join(out_dir, 'scenes_meta.json'), 'w') as handle:
        json.dump(meta, handle, indent=1)
    return meta


def require_generated(path: str, task: str, data_root: str) -> None:
    """Raise a helpful error when a generated file or folder is missing.

    Args:
        path (str): The file or folder a dataset class is about to read.
        task (str): ``'det'``, ``'seg'`` or ``'pose'``.
        data_root (str): The dataset's data root (used in the suggested command).
    """
    if osp.exists(path):
        return
    name = osp.basename(osp.normpath(data_root or '.'))
    split = 'bench' if '_bench' in name else 'small'
    target = re.search(r'_target(?:_s([0-9.]+))?$', name)
    domain = ''
    if target:
        domain = ' --domain target'
        if target.group(1):
            domain += f' --shift-strength {target.group(1)}'
    raise FileNotFoundError(
        f'{path} does not exist: the {task} scenes have not been generated. '
        f'Run `python tools/generate_scenes.py --task {task} --split {split}'
        f'{domain} --out {data_root}` from the repository root '
        '(see docs/scenes.md).'
    )
