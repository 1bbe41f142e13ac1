"""The generated scenes through the downstream dataset classes and metrics."""

import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from mmcompress.datasets.scenes import (
    FASHION_MNIST_CLASSES,  # noqa: E402
    GARMENT_KEYPOINT_SIGMAS,
    generate_scenes,
)

COUNTS = dict(num_train=8, num_val=4)


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    roots = {}
    for task in ('det', 'seg', 'pose'):
        roots[task] = str(tmp_path_factory.mktemp(f'{task}_small'))
        generate_scenes(task, roots[task], seed=11, **COUNTS)
    return roots


def _rle_to_mask(rle):
    from pycocotools import mask as mask_utils

    height, width = rle['size']
    return mask_utils.decode(mask_utils.frPyObjects(rle, height, width)).astype(bool)


def _coco(root, name):
    with open(osp.join(root, 'annotations', name)) as handle:
        return json.load(handle)


def test_stock_mmdet_coco_dataset_reads_boxes_and_masks(roots):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules

    register_all_modules()
    dataset = CocoDataset(
        data_root=roots['det'],
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        metainfo=dict(classes=FASHION_MNIST_CLASSES),
        test_mode=True,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            dict(type='PackDetInputs'),
        ],
    )
    coco = _coco(roots['det'], 'instances_val.json')
    assert len(dataset) == COUNTS['num_val']
    sample = dataset[0]['data_samples']
    annotations = [
        ann for ann in coco['annotations'] if ann['image_id'] == sample.img_id
    ]
    gt = sample.gt_instances
    expected_boxes = [
        [x, y, x + w, y + h] for x, y, w, h in (ann['bbox'] for ann in annotations)
    ]
    np.testing.assert_allclose(gt.bboxes.numpy(), expected_boxes)
    assert gt.labels.tolist() == [a['category_id'] - 1 for a in annotations]
    masks = gt.masks.to_ndarray().astype(bool)
    for mask, ann in zip(masks, annotations):
        np.testing.assert_array_equal(mask, _rle_to_mask(ann['segmentation']))


def _detection_samples(coco, shift=0.0):
    """Ground truth written as mmdet predictions (optionally shifted)."""
    samples = []
    for image in coco['images']:
        annotations = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        boxes = torch.tensor(
            [
                [x + shift, y, x + w + shift, y + h]
                for x, y, w, h in (a['bbox'] for a in annotations)
            ]
        )
        masks = torch.from_numpy(
            np.stack([_rle_to_mask(a['segmentation']) for a in annotations])
        )
        samples.append(
            dict(
                img_id=image['id'],
                ori_shape=(image['height'], image['width']),
                pred_instances=dict(
                    bboxes=boxes,
                    scores=torch.ones(len(annotations)),
                    labels=torch.tensor([a['category_id'] - 1 for a in annotations]),
                    masks=masks,
                ),
            )
        )
    return samples


def test_mmdet_coco_metric_scores_ground_truth_perfectly(roots):
    from mmdet.evaluation import CocoMetric

    ann_file = osp.join(roots['det'], 'annotations', 'instances_val.json')
    coco = _coco(roots['det'], 'instances_val.json')
    results = {}
    for shift in (0.0, 6.0):
        metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
        metric.dataset_meta = dict(classes=FASHION_MNIST_CLASSES)
        metric.process({}, _detection_samples(coco, shift))
        results[shift] = metric.evaluate(len(coco['images']))
    assert results[0.0]['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results[0.0]['coco/segm_mAP'] == pytest.approx(1.0)
    assert results[6.0]['coco/bbox_mAP'] < 0.9


def test_registered_detection_dataset_explains_missing_data(tmp_path):
    from mmcompress.datasets.scenes import FashionSceneDetDataset

    with pytest.raises(FileNotFoundError, match='generate_scenes.py --task det'):
        FashionSceneDetDataset(
            data_root=str(tmp_path / 'det_bench'),
            ann_file='annotations/instances_train.json',
        )


def test_seg_dataset_and_iou_metric(roots):
    from mmseg.evaluation import IoUMetric
    from mmseg.utils import register_all_modules

    from mmcompress.datasets.scenes import FashionSceneSegDataset

    register_all_modules()
    dataset = FashionSceneSegDataset(
        data_root=roots['seg'],
        data_prefix=dict(img_path='images/val', seg_map_path='labels/val'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
    )
    assert len(dataset) == COUNTS['num_val']
    assert dataset.metainfo['classes'][0] == 'background'
    assert len(dataset.metainfo['classes']) == 11
    samples = []
    for index in range(len(dataset)):
        packed = dataset[index]
        label = packed['data_samples'].gt_sem_seg.data
        on_disk = cv2.imread(packed['data_samples'].seg_map_path, cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(label[0].numpy(), on_disk)
        assert packed['inputs'].shape[1:] == on_disk.shape
        samples.append(dict(gt_sem_seg=dict(data=label)))
    scores = {}
    for name, predict in (
        ('perfect', lambda label: label),
        ('background', torch.zeros_like),
    ):
        metric = IoUMetric(iou_metrics=['mIoU'])
        metric.dataset_meta = dataset.metainfo
        metric.process(
            {},
            [
                dict(pred_sem_seg=dict(data=predict(s['gt_sem_seg']['data'])), **s)
                for s in samples
            ],
        )
        scores[name] = metric.evaluate(len(samples))['mIoU']
    assert scores['perfect'] == pytest.approx(100.0)
    assert scores['background'] < 20.0


def test_seg_dataset_explains_missing_data(tmp_path):
    from mmcompress.datasets.scenes import FashionSceneSegDataset

    with pytest.raises(
        FileNotFoundError, match='--task seg --split bench --domain target'
    ):
        FashionSceneSegDataset(
            data_root=str(tmp_path / 'seg_bench_target'),
            data_prefix=dict(img_path='images/val', seg_map_path='labels/val'),
        )


def test_pose_dataset_and_coco_metric(roots):
    from mmpose.evaluation import CocoMetric

    from mmcompress.datasets.scenes import FashionScenePoseDataset

    ann_file = osp.join(roots['pose'], 'annotations', 'keypoints_val.json')
    dataset = FashionScenePoseDataset(
        data_root=roots['pose'],
        ann_file='annotations/keypoints_val.json',
        data_prefix=dict(img='images/val/'),
        test_mode=True,
        pipeline=[],
    )
    coco = _coco(roots['pose'], 'keypoints_val.json')
    assert len(dataset) == len(coco['annotations'])
    meta = dataset.metainfo
    assert meta['num_keypoints'] == 5
    assert list(meta['flip_indices']) == [1, 0, 3, 2, 4]
    np.testing.assert_allclose(meta['sigmas'], GARMENT_KEYPOINT_SIGMAS)
    shapes = {
        image['id']: (image['height'], image['width']) for image in coco['images']
    }
    scores = {}
    for shift in (0.0, 4.0):
        metric = CocoMetric(ann_file=ann_file, nms_mode='none')
        metric.dataset_meta = meta
        samples = []
        for index in range(len(dataset)):
            info = dataset[index]
            keypoints = info['keypoints'].copy()
            keypoints[..., 0] += shift
            samples.append(
                dict(
                    id=info['id'],
                    img_id=info['img_id'],
                    category_id=info['category_id'],
                    ori_shape=shapes[info['img_id']],
                    raw_ann_info=info['raw_ann_info'],
                    gt_instances=dict(
                        bbox_scales=info['bbox'][:, 2:] - info['bbox'][:, :2],
                        bbox_scores=info['bbox_score'],
                    ),
                    pred_instances=dict(
                        keypoints=keypoints,
                        keypoint_scores=np.ones(keypoints.shape[:2]),
                    ),
                )
            )
        metric.process({}, samples)
        scores[shift] = metric.evaluate(len(samples))['coco/AP']
    assert scores[0.0] == pytest.approx(1.0)
    assert scores[4.0] < 0.9
