"""Scene generator: determinism, geometry, format agreement, domain shift, errors."""

import colorsys
import filecmp
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from mmcompress.datasets.scenes import (
    GARMENT_KEYPOINT_NAMES,  # noqa: E402
    SceneOptions,
    default_data_root,
    garment_keypoints,
    generate_scenes,
    iter_scenes,
    mask_to_bbox,
    mask_to_rle,
)
from tests.e2e.runs import load_script

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = dict(num_train=6, num_val=3)


def _rle_decode(rle):
    """Independent decoder: expand runs, then reshape column-major."""
    values = np.concatenate(
        [
            np.full(count, index % 2, dtype=np.uint8)
            for index, count in enumerate(rle['counts'])
        ]
    )
    return values.reshape(rle['size'][::-1]).T.astype(bool)


def _files(root):
    return sorted(
        osp.relpath(osp.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
        if name != 'scenes_meta.json'
    )


@pytest.fixture(scope='module')
def scene_roots(tmp_path_factory):
    """det, seg and pose roots generated from the same seed."""
    roots = {}
    for task in ('det', 'seg', 'pose'):
        roots[task] = str(tmp_path_factory.mktemp(task))
        generate_scenes(task, roots[task], seed=7, **TINY)
    return roots


def test_mask_to_rle_hand_example():
    # column-major pixel order of [[0, 1], [1, 1]] is 0, 1, 1, 1
    mask = np.array([[0, 1], [1, 1]], dtype=bool)
    assert mask_to_rle(mask) == dict(size=[2, 2], counts=[1, 3])
    # a mask starting with foreground gets an empty leading run of zeros
    assert mask_to_rle(~mask) == dict(size=[2, 2], counts=[0, 1, 3])


def test_mask_to_rle_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    mask = rng.random((13, 9)) > 0.6
    rle = mask_utils.frPyObjects(mask_to_rle(mask), 13, 9)
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)


def test_mask_to_bbox_is_tight_coco_box():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    assert mask_to_bbox(mask) == [3.0, 2.0, 6.0, 3.0]


def test_garment_keypoints_on_rectangle_and_flip():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:6, 3:9] = True  # rows 2-5, cols 3-8
    points = garment_keypoints(mask)
    expected = [[3, 2], [8, 2], [8, 5], [3, 5], [5.5, 3.5]]
    np.testing.assert_allclose(points, expected)
    # an asymmetric shape: flipping the image swaps left/right keypoints
    mask[6:9, 3:5] = True
    points = garment_keypoints(mask)
    flipped = garment_keypoints(mask[:, ::-1])
    swap = [1, 0, 3, 2, 4]
    mirrored = points[swap].copy()
    mirrored[:, 0] = mask.shape[1] - 1 - mirrored[:, 0]
    np.testing.assert_allclose(flipped, mirrored)
    with pytest.raises(ValueError, match='empty mask'):
        garment_keypoints(np.zeros((4, 4), dtype=bool))


def test_generation_is_deterministic_by_seed(tmp_path):
    first, second, other = (str(tmp_path / name) for name in 'abc')
    generate_scenes('det', first, seed=3, **TINY)
    generate_scenes('det', second, seed=3, **TINY)
    generate_scenes('det', other, seed=4, **TINY)
    names = _files(first)
    assert names == _files(second)
    _, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(first, other, names, shallow=False)
    assert 'images/train/000000.png' in mismatch


def test_scene_depends_only_on_its_index():
    options = SceneOptions()
    short = list(iter_scenes('val', 2, 5, 'source', options))
    long = list(iter_scenes('val', 4, 5, 'source', options))
    for a, b in zip(short, long):
        np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(long[2].image, long[3].image)


def test_scene_geometry_follows_options():
    options = SceneOptions(
        image_size=96, min_objects=2, max_objects=3, min_item_size=20, max_item_size=40
    )
    counts = []
    for scene in iter_scenes('train', 8, 0, 'source', options):
        assert scene.image.shape == (96, 96, 3)
        assert scene.image.dtype == np.uint8
        counts.append(len(scene.instances))
        for instance in scene.instances:
            _, _, width, height = mask_to_bbox(instance.mask)
            # the resized sprite's longer side is in range; its alpha >= 0.5
            # part can lose a pixel at each border
            assert 20 - 2 <= max(width, height) <= 40
            assert (
                instance.visible_mask.sum()
                >= options.min_visible_fraction * instance.mask.sum()
            )
    assert 1 <= min(counts) and max(counts) <= 3 and sum(counts) >= 16


def test_detection_json_boxes_areas_masks_agree(scene_roots):
    root = scene_roots['det']
    with open(osp.join(root, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    assert [c['id'] for c in coco['categories']] == list(range(1, 11))
    assert len(coco['images']) == TINY['num_train']
    image_ids = {image['id'] for image in coco['images']}
    assert coco['annotations']
    for annotation in coco['annotations']:
        mask = _rle_decode(annotation['segmentation'])
        assert annotation['image_id'] in image_ids
        assert annotation['iscrowd'] == 0
        assert annotation['area'] == mask.sum() > 0
        assert annotation['bbox'] == mask_to_bbox(mask)
    first = coco['images'][0]
    image = cv2.imread(osp.join(root, 'images', 'train', first['file_name']))
    assert image.shape == (first['height'], first['width'], 3)


def test_label_maps_agree_with_instance_masks(scene_roots):
    with open(osp.join(scene_roots['det'], 'annotations', 'instances_val.json')) as f:
        coco = json.load(f)
    for image in coco['images']:
        labels = cv2.imread(
            osp.join(scene_roots['seg'], 'labels', 'val', image['file_name']),
            cv2.IMREAD_UNCHANGED,
        )
        assert labels.dtype == np.uint8 and labels.ndim == 2
        assert set(np.unique(labels)) <= set(range(11)) | {255}
        covered = np.zeros(labels.shape, dtype=bool)
        for annotation in coco['annotations']:
            if annotation['image_id'] != image['id']:
                continue
            mask = _rle_decode(annotation['segmentation'])
            covered |= mask
            # a visible garment pixel is its class or an ignored rim pixel
            assert set(np.unique(labels[mask])) <= {annotation['category_id'], 255}
        # every garment label lies on some visible instance mask
        assert not ((labels > 0) & (labels < 255) & ~covered).any()
        # the images of both roots are the same scenes
        assert filecmp.cmp(
            osp.join(scene_roots['det'], 'images', 'val', image['file_name']),
            osp.join(scene_roots['seg'], 'images', 'val', image['file_name']),
            shallow=False,
        )


def test_keypoints_agree_with_boxes_and_occlusion(scene_roots):
    with open(
        osp.join(scene_roots['pose'], 'annotations', 'keypoints_train.json')
    ) as f:
        pose = json.load(f)
    with open(osp.join(scene_roots['det'], 'annotations', 'instances_train.json')) as f:
        det = json.load(f)
    category = pose['categories'][0]
    assert category['keypoints'] == list(GARMENT_KEYPOINT_NAMES)
    assert len(pose['annotations']) == len(det['annotations'])
    flags = []
    for keypoint_ann, det_ann in zip(pose['annotations'], det['annotations']):
        assert keypoint_ann['garment_class'] + 1 == det_ann['category_id']
        points = np.asarray(keypoint_ann['keypoints']).reshape(-1, 3)
        x, y, width, height = keypoint_ann['bbox']
        assert keypoint_ann['num_keypoints'] == 5
        assert ((points[:, 0] >= x) & (points[:, 0] <= x + width - 1)).all()
        assert ((points[:, 1] >= y) & (points[:, 1] <= y + height - 1)).all()
        # the whole-garment box contains the visible (detection) box
        dx, dy, dw, dh = det_ann['bbox']
        assert x <= dx and y <= dy
        assert dx + dw <= x + width and dy + dh <= y + height
        visible_mask = _rle_decode(det_ann['segmentation'])
        for px, py, flag in points[:4]:  # the extreme points lie on the mask
            on_visible = visible_mask[int(round(py)), int(round(px))]
            assert on_visible == (flag == 2)
            flags.append(flag)
    assert 2 in flags


def test_target_domain_has_other_colour_statistics(tmp_path):
    options = SceneOptions()

    def mean_saturation(domain):
        values = []
        for scene in iter_scenes('train', 6, 0, domain, options):
            pixels = scene.image.reshape(-1, 3)[::17] / 255.0
            values += [colorsys.rgb_to_hsv(*p)[1] for p in pixels]
        return float(np.mean(values))

    source, target = mean_saturation('source'), mean_saturation('target')
    assert target < source - 0.1
    meta = generate_scenes('seg', str(tmp_path), domain='target', **TINY)
    assert meta['domain'] == 'target'
    assert set(meta['backgrounds']) >= {'brick', 'grass', 'gravel'}


def test_shift_strength_blends_the_target_style_towards_the_source():
    from mmcompress.datasets.scenes import STYLES, domain_style
    from mmcompress.datasets.scenes.composer import _background, _photo_crop

    source, target = STYLES['source'], STYLES['target']
    assert domain_style('target', 1.0) is target
    assert domain_style('source') is source
    style = domain_style('target', 0.75)
    # source + s * (target - source), by hand
    assert style.tint_saturation == pytest.approx((0.5 - 0.375, 1.0 - 0.525))
    assert style.tint_value == pytest.approx((0.6 - 0.1125, 1.0 - 0.0375))
    assert style.noise_std == pytest.approx(6.0)
    assert style.photo_mix == pytest.approx(0.25)
    assert style.mix_backgrounds == source.backgrounds
    # the background: 0.75 * target texture + 0.25 * a source photo drawn from a
    # spawned generator; the scene's own generator advances as at strength 1
    rng = np.random.default_rng([3, 1])
    blended, name = _background(rng, style, 64)
    rng_full = np.random.default_rng([3, 1])
    texture, name_full = _background(rng_full, target, 64)
    photo, photo_name = _photo_crop(
        np.random.default_rng([3, 1]).spawn(1)[0], source.backgrounds, 64
    )
    assert name == name_full and photo_name in source.backgrounds
    np.testing.assert_allclose(blended, 0.75 * texture + 0.25 * photo, atol=1e-3)
    assert rng.random() == rng_full.random()


def test_shift_strength_keeps_the_garments_and_moves_the_look():
    options = SceneOptions()

    def scenes(strength):
        return list(iter_scenes('val', 4, 0, 'target', options, strength))

    full, default = scenes(1.0), list(iter_scenes('val', 4, 0, 'target', options))
    half, source = scenes(0.5), list(iter_scenes('val', 4, 0, 'source', options))
    for a, b, c in zip(full, default, half):
        assert (a.image == b.image).all()  # strength 1 is the unchanged target
        assert (a.semantic_map() == c.semantic_map()).all()
        assert (a.image != c.image).any()

    def mean_saturation(group):
        pixels = np.concatenate([s.image.reshape(-1, 3)[::17] for s in group]) / 255
        return float(np.mean([colorsys.rgb_to_hsv(*p)[1] for p in pixels]))

    sat = [mean_saturation(g) for g in (full, half, source)]
    assert sat[0] < sat[1] < sat[2]


def test_shift_strength_roots_and_cli(tmp_path):
    assert (
        default_data_root('seg', 'bench', 'target', 0.75)
        == 'data/scenes/seg_bench_target_s0.75'
    )
    assert default_data_root('seg', 'bench', 'target', 1.0) == (
        'data/scenes/seg_bench_target'
    )
    out = tmp_path / 'seg_bench_target_s0.5'
    _load_cli().main(
        ['--task', 'seg', '--domain', 'target', '--shift-strength', '0.5']
        + ['--out', str(out), '--num-train', '1', '--num-val', '1']
    )
    meta = json.loads((out / 'scenes_meta.json').read_text())
    assert meta['domain'] == 'target' and meta['shift_strength'] == 0.5
    from mmcompress.datasets.scenes.writers import require_generated

    with pytest.raises(FileNotFoundError, match='--shift-strength 0.5 --out'):
        require_generated(str(out / 'missing'), 'seg', str(out))
    with pytest.raises(SystemExit, match='target domain only'):
        _load_cli().main(['--task', 'seg', '--shift-strength', '0.5'])


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(task='box'), "task 'box' is not valid"),
        (dict(domain='target', shift_strength=0.0), 'must be in \\(0, 1\\]'),
        (dict(domain='target', shift_strength=1.5), 'must be in \\(0, 1\\]'),
        (dict(shift_strength=0.5), 'target domain only'),
        (dict(split='huge'), "split 'huge' is not valid"),
        (dict(domain='night'), "domain 'night' is not valid"),
        (dict(min_objects=5, max_objects=2), 'min_objects <= max_objects'),
        (dict(max_item_size=500), 'max_item_size <= image_size'),
        (dict(num_train=0), 'num_train must be >= 1'),
        (dict(item_count=3), "Unknown scene options \\['item_count'\\]"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    arguments = dict(task='det', out_dir=str(tmp_path))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate_scenes(**arguments)


def test_default_data_roots():
    assert default_data_root('seg', 'bench') == 'data/scenes/seg_bench'
    assert default_data_root('seg', 'small', 'target') == 'data/scenes/seg_small_target'


def _load_cli():
    return load_script('tools', 'generate_scenes.py')


def test_cli_writes_a_root(tmp_path, capsys):
    cli = _load_cli()
    out = tmp_path / 'pose'
    cli.main(
        [
            '--task',
            'pose',
            '--out',
            str(out),
            '--num-train',
            '2',
            '--num-val',
            '1',
            '--image-size',
            '96',
            '--max-item-size',
            '48',
        ]
    )
    assert 'wrote' in capsys.readouterr().out
    meta = json.loads((out / 'scenes_meta.json').read_text())
    assert meta['options']['image_size'] == 96
    assert meta['num_images'] == dict(train=2, val=1)
    assert len(os.listdir(out / 'images' / 'train')) == 2
    with pytest.raises(SystemExit, match='min_objects'):
        cli.main(
            [
                '--task',
                'pose',
                '--out',
                str(out),
                '--min-objects',
                '3',
                '--max-objects',
                '1',
            ]
        )


def test_point_config_at_scenes(tmp_path):
    from mmengine.config import Config

    from mmcompress.datasets.scenes import point_config_at_scenes

    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'datasets', 'scenes_det.py')
    )
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset', times=2, dataset=cfg.train_dataloader.dataset
    )
    point_config_at_scenes(cfg, str(tmp_path))
    root = str(tmp_path) + '/'
    assert cfg.train_dataloader.dataset.dataset.data_root == root
    assert cfg.val_dataloader.dataset.data_root == root
    assert cfg.test_evaluator.ann_file == (root + 'annotations/instances_val.json')
    with pytest.raises(FileNotFoundError, match='generate_scenes.py'):
        point_config_at_scenes(cfg, str(tmp_path / 'missing'))
