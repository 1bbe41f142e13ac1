"""CorLoc: correct localisation of weakly supervised detectors.

For every image and every class present in it, the detection of that class
with the highest score is *correct* when its IoU with some ground-truth box of
the class is at least ``iou_thr`` (0.5); an image-class pair without a
detection of its class counts as wrong. CorLoc of a class is the share of its
image-class pairs localised correctly; the reported ``CorLoc`` is the mean over
the classes that occur (as in WSOD papers, which measure it on the training
images; evaluate the loader you want it on).
"""

from typing import Optional, Sequence

import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps
from mmengine.evaluator import BaseMetric

from mmcompress.registry import METRICS
from mmcompress.utils.checks import check_number


def corloc_hits(
    pred_boxes: torch.Tensor,
    pred_scores: torch.Tensor,
    pred_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    iou_thr: float = 0.5,
) -> list:
    """``(class, correct)`` for every class present in one image.

    Args:
        pred_boxes (Tensor): (P, 4) detections.
        pred_scores (Tensor): (P,) their scores.
        pred_labels (Tensor): (P,) their classes.
        gt_boxes (Tensor): (G, 4) ground-truth boxes.
        gt_labels (Tensor): (G,) their classes.
        iou_thr (float): Least IoU of a correct localisation. Defaults to 0.5.

    Returns:
        list[tuple[int, bool]]: One pair per class in ``gt_labels``.
    """
    pairs = []
    for cls in gt_labels.unique().tolist():
        mine = pred_labels == cls
        if not mine.any():
            pairs.append((cls, False))
            continue
        top = pred_boxes[mine][pred_scores[mine].argmax()][None]
        iou = bbox_overlaps(top.float(), gt_boxes[gt_labels == cls].float())
        pairs.append((cls, bool(iou.max() >= iou_thr)))
    return pairs


@METRICS.register_module()
class CorLocMetric(BaseMetric):
    """CorLoc of detections against the ground-truth boxes of the samples.

    Needs ``gt_instances`` (boxes and labels, from ``LoadAnnotations`` in the
    evaluation pipeline) and ``pred_instances`` in every data sample.

    Args:
        iou_thr (float): Least IoU of a correct localisation. Defaults to 0.5.
        collect_device (str): Defaults to ``'cpu'``.
        prefix (str, optional): Defaults to ``'wsod'``.
    """

    default_prefix: Optional[str] = 'wsod'

    def __init__(
        self,
        iou_thr: float = 0.5,
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.iou_thr = check_number('iou_thr', iou_thr, low=0, high=1)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Collect ``(class, correct)`` pairs of the batch."""
        for sample in data_samples:
            gt, pred = sample.get('gt_instances'), sample.get('pred_instances')
            if gt is None or 'bboxes' not in gt:
                raise KeyError(
                    'CorLocMetric needs ground-truth boxes: the evaluation '
                    "pipeline must hold dict(type='LoadAnnotations', "
                    'with_bbox=True) before PackDetInputs'
                )
            if pred is None:
                raise KeyError(
                    "CorLocMetric needs `pred_instances` (the detector's "
                    'predictions) in every data sample'
                )
            gt_boxes = torch.as_tensor(gt['bboxes']).reshape(-1, 4)
            gt_labels = torch.as_tensor(gt['labels'])
            lengths = dict(
                pred_boxes=len(pred['bboxes']),
                pred_scores=len(pred['scores']),
                pred_labels=len(pred['labels']),
                gt_boxes=len(gt_boxes),
                gt_labels=len(gt_labels),
            )
            if (
                len(
                    {
                        lengths['pred_boxes'],
                        lengths['pred_scores'],
                        lengths['pred_labels'],
                    }
                )
                > 1
                or lengths['gt_boxes'] != lengths['gt_labels']
            ):
                raise ValueError(
                    f'CorLocMetric: boxes, scores and labels differ in length '
                    f'({lengths})'
                )
            self.results.extend(
                corloc_hits(
                    pred['bboxes'],
                    pred['scores'],
                    pred['labels'],
                    gt_boxes,
                    gt_labels,
                    self.iou_thr,
                )
            )

    def compute_metrics(self, results: list) -> dict:
        """``CorLoc`` (mean over classes, %) and ``CorLoc_<class>``."""
        if not results:
            raise ValueError(
                'CorLocMetric received no image-class pairs: the evaluated '
                'images hold no ground-truth boxes'
            )
        classes = (self.dataset_meta or {}).get('classes')
        per_class = {}
        for cls, correct in results:
            per_class.setdefault(cls, []).append(correct)
        metrics = {}
        for cls in sorted(per_class):
            name = classes[cls] if classes else str(cls)
            metrics[f'CorLoc_{name}'] = 100 * float(np.mean(per_class[cls]))
        metrics['CorLoc'] = float(
            np.mean([100 * np.mean(v) for v in per_class.values()])
        )
        return metrics


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP: the mean, over the positives, of the precision at
    their rank when the items are sorted by decreasing score (ties: stable
    order)."""
    order = np.argsort(-scores, kind='stable')
    hits = positives[order].astype(bool)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


@METRICS.register_module()
class ImageLevelAPMetric(BaseMetric):
    """Image-level classification mAP of a weakly supervised model.

    Per class, the images are ranked by the model's ``pred_image_scores`` (C,)
    and the AP of the images whose ``gt_instances.labels`` hold the class is
    taken; ``cls_mAP`` is the mean over the classes that occur (%). It tells
    whether a detector trained from image-level labels has learnt to
    classify, before asking whether it localises.

    Args:
        collect_device (str): Defaults to ``'cpu'``.
        prefix (str, optional): Defaults to ``'wsod'``.
    """

    default_prefix: Optional[str] = 'wsod'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Collect ``(image scores, classes present)`` of the batch."""
        for sample in data_samples:
            if 'pred_image_scores' not in sample:
                raise KeyError(
                    'ImageLevelAPMetric needs `pred_image_scores` (C,) in every '
                    'data sample; OICR and WSODImageClassifier write them'
                )
            scores = torch.as_tensor(sample['pred_image_scores']).cpu()
            labels = torch.as_tensor(sample['gt_instances']['labels']).cpu()
            if scores.dim() != 1 or (
                labels.numel() and int(labels.max()) >= scores.numel()
            ):
                raise ValueError(
                    f'ImageLevelAPMetric: pred_image_scores of shape '
                    f'{tuple(scores.shape)} and gt labels {labels.tolist()} '
                    'differ: the scores must be one value per class (C,) and '
                    'every label below C'
                )
            self.results.append((scores.numpy(), labels.unique().numpy()))

    def compute_metrics(self, results: list) -> dict:
        """``cls_mAP`` (%): mean over the classes present in some image."""
        if not results:
            raise ValueError(
                'ImageLevelAPMetric received no predictions: the evaluation '
                'dataloader yielded no images'
            )
        scores = np.stack([s for s, _ in results])
        positives = np.zeros(scores.shape, bool)
        for row, (_, labels) in enumerate(results):
            positives[row, labels] = True
        aps = [
            average_precision(scores[:, c], positives[:, c])
            for c in range(scores.shape[1])
            if positives[:, c].any()
        ]
        if not aps:
            raise ValueError(
                'ImageLevelAPMetric received no image labels: the evaluated '
                'images hold no ground-truth instances'
            )
        return dict(cls_mAP=100 * float(np.mean(aps)))
