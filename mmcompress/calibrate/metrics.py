"""Calibration metrics for ``val_evaluator``/``test_evaluator``.

``ClsCalibrationMetric`` reads mmpretrain data samples (``pred_score``,
``gt_label``); ``SegCalibrationMetric`` reads mmseg data samples
(``seg_logits``, ``gt_sem_seg``) pixel-wise. Both report, in percent, ``ece``
(equal-width bins), ``aece`` (equal-mass bins), ``cece`` (classwise), ``oe``,
``ue`` and ``accuracy``, plus the mean ``nll``. They draw nothing: each keeps
the equal-width bin sums of its latest evaluation, which
:class:`~mmcompress.calibrate.reliability_diagram.ReliabilityDiagramHook`
turns into a reliability diagram. The binning rules are in
:mod:`mmcompress.calibrate.functional`.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.evaluator import BaseMetric

from mmcompress.registry import METRICS

from .functional import (
    BinStatistics,
    bin_statistics,
    binned_errors,
    calibration_report,
    check_probabilities,
    check_ue_weight,
    classwise_bin_statistics,
    classwise_error,
    equal_mass_edges,
    equal_width_edges,
    negative_log_likelihood_sum,
    top_label,
)

PERCENT_KEYS = ('accuracy', 'ece', 'aece', 'cece', 'oe', 'ue')


def _to_percent(report: Dict[str, float]) -> Dict[str, float]:
    return {
        key: 100 * value if key in PERCENT_KEYS else value
        for key, value in report.items()
    }


class CalibrationMetricBase(BaseMetric):
    """Options shared by the calibration metrics.

    Args:
        num_bins (int): Bins of every binned error. Defaults to 15.
        ue_weight (str): Per-bin weight of the under-confidence error ``ue``:
            ``'confidence'`` (``conf_b``, as the RankMixup/MbLS evaluation
            code) or ``'one_minus_confidence'`` (``1 - conf_b``). Defaults to
            ``'confidence'``.
        collect_device (str): See ``BaseMetric``. Defaults to 'cpu'.
        prefix (str, optional): Metric name prefix. Defaults to
            ``'calibration'``.
    """

    default_prefix = 'calibration'

    def __init__(
        self,
        num_bins: int = 15,
        ue_weight: str = 'confidence',
        collect_device: str = 'cpu',
        prefix: Optional[str] = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.edges = equal_width_edges(num_bins)
        self.num_bins = num_bins
        self.ue_weight = check_ue_weight(ue_weight)
        self._reliability: Optional[Tuple[BinStatistics, float]] = None

    def _keep_reliability(self, stats: BinStatistics, ece: float) -> None:
        self._reliability = (stats, ece)

    def pop_reliability(self) -> Optional[Tuple[BinStatistics, float]]:
        """Take the bin sums and ECE of the latest evaluation.

        Returns:
            tuple[BinStatistics, float], optional: Equal-width top-label bin
            sums and the ECE (fraction), or None when nothing was evaluated
            since the last call (or on a non-main process, which does not
            compute metrics).
        """
        reliability, self._reliability = self._reliability, None
        return reliability


@METRICS.register_module()
class ClsCalibrationMetric(CalibrationMetricBase):
    """ECE, adaptive ECE, classwise ECE, NLL, OE and UE for classification.

    Use next to mmpretrain's ``Accuracy``::

        val_evaluator = [dict(type='Accuracy', topk=1),
                         dict(type='ClsCalibrationMetric', num_bins=15)]

    Probabilities are the data samples' ``pred_score`` (softmax outputs of the
    head); NLL uses ``-log max(p_y, 1e-12)``.

    Args:
        See :class:`CalibrationMetricBase`.
    """

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Store the probabilities and labels of a batch."""
        for sample in data_samples:
            if 'pred_score' not in sample:
                raise KeyError(
                    'ClsCalibrationMetric needs `pred_score` in the data '
                    f'samples (mmpretrain DataSample); got keys '
                    f'{sorted(sample.keys())}'
                )
            score = sample['pred_score'].detach().float().cpu().reshape(-1)
            label = sample['gt_label'].detach().long().cpu().reshape(-1)
            if label.numel() != 1:
                raise ValueError(
                    'ClsCalibrationMetric needs one gt_label per '
                    f'sample, got {label.tolist()}'
                )
            self.results.append((score, label))

    def compute_metrics(self, results: List) -> Dict[str, float]:
        """Compute every number over the collected predictions."""
        if not results:
            raise ValueError(
                'ClsCalibrationMetric received no predictions: '
                'the evaluation dataloader produced 0 samples'
            )
        probs = torch.stack([score for score, _ in results])
        labels = torch.cat([label for _, label in results])
        check_probabilities(
            probs,
            labels,
            what='pred_score',
            fix='the head must write softmax probabilities to pred_score '
            '(as mmpretrain heads do), not raw logits',
        )
        report = calibration_report(
            probs, labels, self.num_bins, ue_weight=self.ue_weight
        )
        confidences, correct = top_label(probs, labels)
        self._keep_reliability(
            bin_statistics(confidences, correct, self.edges), report['ece']
        )
        return _to_percent(report)


@METRICS.register_module()
class SegCalibrationMetric(CalibrationMetricBase):
    """Pixel-wise calibration metrics for semantic segmentation.

    Probabilities are ``softmax(seg_logits)`` (``sigmoid`` with a
    two-class split when the model outputs one channel). Memory stays
    bounded: ECE, classwise ECE, OE, UE, NLL and accuracy are computed exactly
    from per-image bin sums, while the adaptive ECE (which needs sorted
    confidences) uses a uniform random sample of at most
    ``aece_pixels_per_image`` valid pixels per image (seeded, reproducible).

    Args:
        ignore_index (int): Label value excluded from every statistic.
            Defaults to 255.
        aece_pixels_per_image (int): Pixels sampled per image for the
            adaptive ECE. Defaults to 4096.
        seed (int): Seed of the pixel sampling. Defaults to 0.
        **kwargs: See :class:`CalibrationMetricBase`.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        aece_pixels_per_image: int = 4096,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if aece_pixels_per_image < 1:
            raise ValueError(
                f'aece_pixels_per_image must be >= 1, got {aece_pixels_per_image}'
            )
        self.ignore_index = ignore_index
        self.aece_pixels_per_image = aece_pixels_per_image
        self.generator = torch.Generator().manual_seed(seed)

    def _pixel_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(C, H, W)`` logits to ``(H * W, K)`` probabilities."""
        logits = logits.detach().float().cpu()
        if logits.dim() != 3:
            raise ValueError(
                f'seg_logits must have shape (C, H, W), got {tuple(logits.shape)}'
            )
        flat = logits.flatten(1).t()
        if flat.shape[1] == 1:
            foreground = flat.sigmoid()
            return torch.cat([1 - foreground, foreground], dim=1)
        return flat.softmax(dim=1)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Accumulate the bin sums (and a pixel sample) of each image."""
        for sample in data_samples:
            if 'seg_logits' not in sample or 'gt_sem_seg' not in sample:
                raise KeyError(
                    'SegCalibrationMetric needs `seg_logits` and `gt_sem_seg` '
                    f'in the data samples; got keys {sorted(sample.keys())}'
                )
            probs = self._pixel_probabilities(sample['seg_logits']['data'])
            labels = sample['gt_sem_seg']['data'].detach().long().cpu()
            labels = labels.reshape(-1)
            if labels.numel() != probs.shape[0]:
                raise ValueError(
                    f'gt_sem_seg has {labels.numel()} pixels but seg_logits '
                    f'has {probs.shape[0]}'
                )
            valid = labels != self.ignore_index
            probs, labels = probs[valid], labels[valid]
            if labels.numel() == 0:
                continue
            check_probabilities(probs, labels, what='pixel probabilities')
            confidences, correct = top_label(probs, labels)
            keep = torch.randperm(labels.numel(), generator=self.generator)[
                : self.aece_pixels_per_image
            ]
            self.results.append(
                dict(
                    # plain dicts: mmengine's result collection rebuilds
                    # tuples as plain tuples
                    top=bin_statistics(confidences, correct, self.edges)._asdict(),
                    classwise=classwise_bin_statistics(
                        probs, labels, self.edges
                    )._asdict(),
                    nll_sum=negative_log_likelihood_sum(probs, labels),
                    sample_conf=confidences[keep],
                    sample_correct=correct[keep],
                )
            )

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Sum the per-image statistics and compute every number."""
        if not results:
            raise ValueError(
                'SegCalibrationMetric received no valid pixels: no image was '
                'evaluated or every pixel equals ignore_index '
                f'{self.ignore_index}'
            )
        top = BinStatistics(**results[0]['top'])
        classwise = BinStatistics(**results[0]['classwise'])
        for result in results[1:]:
            top = top + BinStatistics(**result['top'])
            image_classwise = BinStatistics(**result['classwise'])
            if image_classwise.counts.shape != classwise.counts.shape:
                raise ValueError(
                    'seg_logits changed their number of classes between images'
                )
            classwise = classwise + image_classwise
        report = binned_errors(top, self.ue_weight)
        sample_conf = torch.cat([r['sample_conf'] for r in results])
        sample_correct = torch.cat([r['sample_correct'] for r in results])
        report['aece'] = binned_errors(
            bin_statistics(
                sample_conf,
                sample_correct,
                equal_mass_edges(sample_conf, self.num_bins),
            )
        )['ece']
        report['cece'] = classwise_error(classwise)
        report['nll'] = sum(r['nll_sum'] for r in results) / top.total
        # every valid pixel is in some equal-width bin (confidence > 0)
        report['accuracy'] = float(top.accuracy_sums.sum()) / top.total
        self._keep_reliability(top, report['ece'])
        return _to_percent(report)
