"""mIoU of old, new and all classes and their harmonic mean (hIoU).

As the official DKD evaluation (``train_voc.py``, ``utils/metric.py``):
"old" is background plus the classes of step 0, "new" every class added by
steps 1..t, "all" every seen class, and hIoU the harmonic mean of old and
new mIoU. The step's classes come from the dataset meta that
:class:`.IncrementalSegDataset` writes (``class_steps``).
"""

from typing import Dict, List, Optional, Sequence

import numpy as np
from mmseg.evaluation import IoUMetric

from mmcompress.registry import METRICS


def old_new_all(iou: np.ndarray, num_old: int) -> Dict[str, float]:
    """mIoU of classes ``0..num_old-1``, of the rest, of all, and hIoU.

    Args:
        iou (np.ndarray): Per-class IoU (NaN: class absent from labels and
            predictions, left out of the means).
        num_old (int): Background plus step-0 classes.

    Returns:
        dict: ``mIoU_old``, ``mIoU_new`` (NaN without new classes),
        ``mIoU_all`` and ``hIoU`` (NaN without new classes), as fractions.
    """

    def mean(values):
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else float('nan')

    old, new = mean(iou[:num_old]), mean(iou[num_old:])
    harmonic = 2 * old * new / (old + new) if old + new > 0 else float('nan')
    return dict(mIoU_old=old, mIoU_new=new, mIoU_all=mean(iou), hIoU=harmonic)


@METRICS.register_module()
class IncrementalIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` plus ``mIoU_old``, ``mIoU_new``, ``mIoU_all`` and
    ``hIoU`` (percent).

    Args:
        num_base_classes (int, optional): Foreground classes that count as
            old. None: those of step 0 in the dataset meta (``class_steps``);
            give it for a dataset without that meta (e.g. joint training
            reported on a split's partition).
        **kwargs: ``IoUMetric`` arguments.
    """

    def __init__(self, num_base_classes: Optional[int] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_base_classes = num_base_classes

    def _num_old(self) -> int:
        if self.num_base_classes is not None:
            return 1 + self.num_base_classes
        steps: Optional[List[List[int]]] = (self.dataset_meta or {}).get('class_steps')
        if not steps:
            raise KeyError(
                'IncrementalIoUMetric needs the split of the evaluated '
                'dataset: wrap it in IncrementalSegDataset (its meta has '
                "'class_steps') or give num_base_classes."
            )
        return 1 + len(steps[0])

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Check every sample's fields and sizes, then count its areas.

        Args:
            data_batch: The batch (unused, as in ``IoUMetric``).
            data_samples (Sequence[dict]): Samples with ``pred_sem_seg`` and
                ``gt_sem_seg`` (each ``{'data': (1, H, W) tensor}``).
        """
        for sample in data_samples:
            if 'pred_sem_seg' not in sample or 'gt_sem_seg' not in sample:
                raise KeyError(
                    'IncrementalIoUMetric needs `pred_sem_seg` and `gt_sem_seg` in '
                    f'every data sample; got the keys {sorted(sample)}'
                )
            pred = sample['pred_sem_seg']['data']
            gt = sample['gt_sem_seg']['data']
            if pred.shape[-2:] != gt.shape[-2:]:
                raise ValueError(
                    f'IncrementalIoUMetric: pred_sem_seg {tuple(pred.shape)} and '
                    f'gt_sem_seg {tuple(gt.shape)} differ in size'
                )
        super().process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """``IoUMetric``'s metrics plus old/new/all mIoU and hIoU."""
        if not results:
            raise ValueError(
                'IncrementalIoUMetric received no predictions: the evaluated '
                "split is empty (check the step's classes and the dataloader)"
            )
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        columns = tuple(zip(*results))
        iou = self.total_area_to_metrics(
            sum(columns[0]),
            sum(columns[1]),
            sum(columns[2]),
            sum(columns[3]),
            ['mIoU'],
            self.nan_to_num,
            self.beta,
        )['IoU']
        iou = np.asarray(iou, dtype=float)
        for key, value in old_new_all(iou, self._num_old()).items():
            metrics[key] = round(value * 100, 2)
        return metrics
