"""The step dataset wrapper: image selection and label remapping."""

import numpy as np
import pytest

from mmcompress.incremental import IncrementalSegDataset


def labels_of(dataset):
    """Label values of every served image (after the step's remapping)."""
    return [
        sorted(np.unique(dataset[i]['gt_seg_map']).tolist())
        for i in range(len(dataset))
    ]


def build(label_maps, **kwargs):
    return IncrementalSegDataset(dataset=label_maps, split='2-1-1', **kwargs)


# image contents: 0 {1}, 1 {1, 3}, 2 {2}, 3 {3}, 4 {4, 255}, 5 {3, 4}
def test_overlap_train_step0_masks_future_classes(label_maps):
    dataset = build(label_maps, step=0)
    assert dataset.indices == [0, 1, 2]  # images holding class 1 or 2
    assert labels_of(dataset) == [[0, 1], [0, 1], [0, 2]]  # class 3 -> 0


def test_overlap_train_step1_masks_old_and_future_classes(label_maps):
    dataset = build(label_maps, step=1)
    assert dataset.indices == [1, 3, 5]  # images holding class 3
    assert labels_of(dataset) == [[0, 3], [0, 3], [0, 3]]  # 1 and 4 -> 0


def test_disjoint_train_drops_images_with_future_classes(label_maps):
    dataset = build(label_maps, step=1, setting='disjoint')
    assert dataset.indices == [1, 3]  # image 5 also holds future class 4
    assert labels_of(dataset) == [[0, 3], [0, 3]]
    step0 = build(label_maps, step=0, setting='disjoint')
    assert step0.indices == [0, 2]  # image 1 holds future class 3


def test_test_mode_keeps_seen_classes_and_masks_future_ones(label_maps):
    dataset = build(label_maps, step=1, mode='test')
    assert dataset.indices == [0, 1, 2, 3, 5]  # any of 1, 2, 3
    assert labels_of(dataset) == [[0, 1], [0, 1, 3], [0, 2], [0, 3], [0, 3]]
    last = build(label_maps, step=2, mode='test')
    assert labels_of(last)[4] == [0, 4, 255]  # ignore stays 255


def test_meta_lists_seen_classes_and_step_indices(label_maps):
    meta = build(label_maps, step=1, mode='test').metainfo
    assert meta['classes'] == ('background', 'a', 'b', 'c')
    assert meta['class_steps'] == [[1, 2], [3]]
    assert (meta['split'], meta['step'], meta['setting']) == ('2-1-1', 1, 'overlap')


def test_explicit_order_remaps_class_ids(label_maps):
    """Split [[3, 4], [1]]: dataset class 3 -> 1, 4 -> 2, 1 -> 3."""
    dataset = IncrementalSegDataset(
        dataset=label_maps, split=[[3, 4], [1]], step=1, mode='test'
    )
    assert dataset.metainfo['classes'] == ('background', 'c', 'd', 'a')
    info = {i: labels for i, labels in zip(dataset.indices, labels_of(dataset))}
    assert info[1] == [0, 1, 3]  # {1, 3} -> {3, 1}
    assert info[5] == [0, 1, 2]  # {3, 4} -> {1, 2}
    assert 2 not in dataset.indices  # class 2 is in no step: never selected
    train = IncrementalSegDataset(dataset=label_maps, split=[[3, 4], [1]], step=1)
    assert labels_of(train) == [[0, 3], [0, 3]]  # images 0 and 1, class 1 -> 3


def test_index_file_caches_present_labels(label_maps, tmp_path):
    index = tmp_path / 'index.json'
    first = build(label_maps, step=1, index_file=str(index))
    assert index.is_file()
    second = build(label_maps, step=1, index_file=str(index))
    assert second.indices == first.indices


def test_unknown_setting_and_mode(label_maps):
    with pytest.raises(ValueError, match="setting='sequential' is invalid"):
        build(label_maps, step=0, setting='sequential')
    with pytest.raises(ValueError, match="mode='val' is invalid"):
        build(label_maps, step=0, mode='val')
