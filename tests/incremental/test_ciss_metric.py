"""Old / new / all mIoU and hIoU."""

import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmcompress.incremental import IncrementalIoUMetric
from mmcompress.incremental.metric import old_new_all


def test_old_new_all_by_hand():
    iou = np.array([0.9, 0.5, np.nan, 0.2, 0.4])  # bg, 2 base classes, 2 new
    got = old_new_all(iou, num_old=3)
    assert got['mIoU_old'] == pytest.approx(0.7)  # NaN class left out
    assert got['mIoU_new'] == pytest.approx(0.3)
    assert got['mIoU_all'] == pytest.approx(0.5)
    assert got['hIoU'] == pytest.approx(2 * 0.7 * 0.3 / 1.0)
    assert math.isnan(old_new_all(iou[:3], num_old=3)['hIoU'])


def sample(pred, label):
    out = SegDataSample()
    out.pred_sem_seg = PixelData(data=torch.tensor([pred]))
    out.gt_sem_seg = PixelData(data=torch.tensor([label]))
    return out.to_dict()


def test_metric_reads_the_step_partition_from_the_dataset_meta():
    """Classes 0 (bg), 1 (step 0), 2 (step 1); IoU 1/2, 1/3, 1/2 by hand."""
    metric = IncrementalIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('background', 'a', 'b'), class_steps=[[1], [2]])
    # pixels (pred, label): (0,0) (0,1) (1,1) (2,1) (2,2) (1,0)
    metric.process({}, [sample([[0, 0, 1, 2, 2, 1]], [[0, 1, 1, 1, 2, 0]])])
    result = metric.compute_metrics(metric.results)
    # bg: inter 1, union |pred 0|2 + |label 0|2 - 1 = 3 -> 1/3
    # a: inter 1, union |pred 1|2 + |label 1|3 - 1 = 4 -> 1/4
    # b: inter 1, union |pred 2|2 + |label 2|1 - 1 = 2 -> 1/2
    old, new = (1 / 3 + 1 / 4) / 2, 1 / 2
    assert result['mIoU_old'] == pytest.approx(round(old * 100, 2))
    assert result['mIoU_new'] == pytest.approx(50.0)
    assert result['mIoU_all'] == pytest.approx(
        round((1 / 3 + 1 / 4 + 1 / 2) / 3 * 100, 2)
    )
    assert result['hIoU'] == pytest.approx(round(2 * old * new / (old + new) * 100, 2))
    assert result['mIoU'] == result['mIoU_all']


def test_num_base_classes_overrides_the_meta():
    metric = IncrementalIoUMetric(iou_metrics=['mIoU'], num_base_classes=1)
    metric.dataset_meta = dict(classes=('background', 'a', 'b'))
    metric.process({}, [sample([[0, 1, 2]], [[0, 1, 2]])])
    result = metric.compute_metrics(metric.results)
    assert (result['mIoU_old'], result['mIoU_new'], result['hIoU']) == (100, 100, 100)
