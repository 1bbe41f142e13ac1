"""Calibration statistics shared by the metrics, the diagrams and the tools.

Bin-membership rule (that of the RankMixup/MbLS evaluation code): bin edges are
``float32`` values, a confidence ``c`` belongs to bin ``b`` when
``edge[b] < c <= edge[b + 1]``, compared in ``float32``. A confidence equal to the
lowest edge belongs to no bin but still counts in the total ``n``, so every error
is ``sum_b (n_b / n) * |acc_b - conf_b|`` with ``n`` the number of samples.

- Equal-width edges: ``torch.linspace(0, 1, num_bins + 1)`` in ``float32``.
- Equal-mass edges (adaptive ECE): ``np.interp(linspace(0, n, num_bins + 1),
  arange(n), sort(conf))``. The lowest edge equals the smallest confidence, so that
  sample (and any tie with it) falls outside every bin, as in the official code.
- Over-confidence error: ``sum_b (n_b / n) * conf_b * max(conf_b - acc_b, 0)``;
  under-confidence error: ``sum_b (n_b / n) * w_b * max(acc_b - conf_b, 0)`` with
  ``w_b = conf_b`` (``ue_weight='confidence'``, the default: the RankMixup/MbLS
  evaluation code) or ``w_b = 1 - conf_b`` (``ue_weight='one_minus_confidence'``).
- Classwise ECE: for each class ``k`` the probabilities ``p_k`` are binned against
  the indicator ``y == k``; the result is the mean over classes.
"""

from typing import Dict, NamedTuple

import numpy as np
import torch

#: Smallest probability used inside ``log`` so a zero probability gives a finite NLL.
MIN_PROBABILITY = 1e-12

#: Largest accepted ``|sum_k p_k - 1|`` per row (loose enough for a half-precision
#: softmax, far tighter than any logits or sigmoid scores).
PROBABILITY_SUM_TOLERANCE = 1e-2

#: Weights of the under-confidence error per bin: ``conf_b`` (the RankMixup/MbLS
#: evaluation code, default) or ``1 - conf_b``.
UE_WEIGHTS = ('confidence', 'one_minus_confidence')

#: Fix suggested when scores are not probabilities.
SOFTMAX_FIX = 'apply softmax first (probs = logits.softmax(dim=1))'


class BinStatistics(NamedTuple):
    """Per-bin sums from which every binned calibration error is computed.

    Attributes:
        counts (torch.Tensor): Samples per bin, shape ``(..., num_bins)``.
        confidence_sums (torch.Tensor): Sum of confidences per bin.
        accuracy_sums (torch.Tensor): Sum of correctness indicators per bin.
        total (int): Number of samples the proportions are taken over
            (including samples outside every bin).
    """

    counts: torch.Tensor
    confidence_sums: torch.Tensor
    accuracy_sums: torch.Tensor
    total: int

    def __add__(self, other: 'BinStatistics') -> 'BinStatistics':
        return BinStatistics(
            self.counts + other.counts,
            self.confidence_sums + other.confidence_sums,
            self.accuracy_sums + other.accuracy_sums,
            self.total + other.total,
        )

    @property
    def bin_accuracy(self) -> torch.Tensor:
        """Mean correctness per bin (0 for empty bins)."""
        return self.accuracy_sums / self.counts.clamp_min(1)

    @property
    def bin_confidence(self) -> torch.Tensor:
        """Mean confidence per bin (0 for empty bins)."""
        return self.confidence_sums / self.counts.clamp_min(1)


def check_probabilities(
    probs: torch.Tensor,
    labels: torch.Tensor,
    what: str = 'probabilities',
    fix: str = SOFTMAX_FIX,
) -> None:
    """Validate a ``(N, K)`` probability matrix and its ``(N,)`` labels.

    Args:
        probs (torch.Tensor): Class probabilities, shape ``(N, K)``.
        labels (torch.Tensor): Integer labels in ``[0, K)``, shape ``(N,)``.
        what (str): Name used in error messages.
        fix (str): Likely fix named when the rows are not probabilities.

    Raises:
        ValueError: On an empty input, wrong shapes, NaN/inf values, rows that
            are not probabilities (a value outside ``[0, 1]`` or a sum off 1 by
            more than :data:`PROBABILITY_SUM_TOLERANCE`) or labels outside
            ``[0, K)``.
    """
    if probs.dim() != 2:
        raise ValueError(
            f'{what} must have shape (N, num_classes), got {tuple(probs.shape)}'
        )
    if probs.shape[0] == 0:
        raise ValueError(
            f'{what} are empty (0 samples): calibration metrics '
            'need at least one prediction'
        )
    if labels.shape != (probs.shape[0],):
        raise ValueError(
            f'labels must have shape ({probs.shape[0]},) to match '
            f'{what}, got {tuple(labels.shape)}'
        )
    finite = torch.isfinite(probs).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(
            f'{what} contain NaN or inf for {int((~finite).sum())} of '
            f'{probs.shape[0]} samples (first at index '
            f'{int((~finite).nonzero()[0])}); check the model outputs'
        )
    sums = probs.double().sum(dim=1)
    bad = (
        (probs < 0).any(dim=1)
        | (probs > 1 + PROBABILITY_SUM_TOLERANCE).any(dim=1)
        | ((sums - 1).abs() > PROBABILITY_SUM_TOLERANCE)
    )
    if bool(bad.any()):
        raise ValueError(
            f'{what} must be probabilities (each row in [0, 1] summing to 1 '
            f'within {PROBABILITY_SUM_TOLERANCE}), got {int(bad.sum())} of '
            f'{probs.shape[0]} rows that are not (values in '
            f'[{float(probs.min()):.4g}, {float(probs.max()):.4g}], row sums in '
            f'[{float(sums.min()):.4g}, {float(sums.max()):.4g}]); these look '
            f'like logits or unnormalised scores: {fix}'
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(
            f'labels must lie in [0, {probs.shape[1]}) for {probs.shape[1]} '
            f'classes, got values in [{int(labels.min())}, '
            f'{int(labels.max())}]'
        )


def equal_width_edges(num_bins: int) -> torch.Tensor:
    """Equal-width bin edges on ``[0, 1]`` in ``float32``.

    Args:
        num_bins (int): Number of bins (>= 1).

    Returns:
        torch.Tensor: ``num_bins + 1`` edges.
    """
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f'num_bins must be a positive int, got {num_bins!r}')
    return torch.linspace(0, 1, num_bins + 1, dtype=torch.float32)


def equal_mass_edges(confidences: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Equal-mass bin edges interpolated on the sorted confidences.

    Args:
        confidences (torch.Tensor): Confidences, shape ``(N,)``, N >= 1.
        num_bins (int): Number of bins (>= 1).

    Returns:
        torch.Tensor: ``num_bins + 1`` non-decreasing ``float32`` edges.
    """
    equal_width_edges(num_bins)  # validates num_bins
    sorted_conf = np.sort(confidences.detach().cpu().double().numpy())
    n = sorted_conf.shape[0]
    edges = np.interp(np.linspace(0, n, num_bins + 1), np.arange(n), sorted_conf)
    return torch.from_numpy(edges).float()


def bin_statistics(
    confidences: torch.Tensor, correct: torch.Tensor, edges: torch.Tensor
) -> BinStatistics:
    """Bin confidences with the ``lower < c <= upper`` rule and sum per bin.

    Args:
        confidences (torch.Tensor): Values in ``[0, 1]``, shape ``(N,)``.
        correct (torch.Tensor): Correctness (bool or 0/1), shape ``(N,)``.
        edges (torch.Tensor): Non-decreasing ``float32`` edges.

    Returns:
        BinStatistics: Sums in ``float64``.
    """
    confidences = confidences.detach().reshape(-1).float().cpu()
    correct = correct.detach().reshape(-1).cpu().double()
    num_bins = edges.numel() - 1
    # bucketize(right=False) returns i with edges[i-1] < c <= edges[i]
    index = torch.bucketize(confidences, edges.float().cpu(), right=False) - 1
    inside = (index >= 0) & (index < num_bins)
    index = index[inside]
    counts = torch.bincount(index, minlength=num_bins).double()
    conf_sums = torch.bincount(
        index, weights=confidences[inside].double(), minlength=num_bins
    )
    acc_sums = torch.bincount(index, weights=correct[inside], minlength=num_bins)
    return BinStatistics(counts, conf_sums, acc_sums, int(confidences.numel()))


def classwise_bin_statistics(
    probs: torch.Tensor, labels: torch.Tensor, edges: torch.Tensor
) -> BinStatistics:
    """Per-class binning of ``p_k`` against the indicator ``y == k``.

    Args:
        probs (torch.Tensor): Probabilities, shape ``(N, K)``.
        labels (torch.Tensor): Labels, shape ``(N,)``.
        edges (torch.Tensor): Equal-width ``float32`` edges.

    Returns:
        BinStatistics: Sums of shape ``(K, num_bins)``; ``total`` is N.
    """
    probs = probs.detach().float().cpu()
    labels = labels.detach().long().cpu()
    num_samples, num_classes = probs.shape
    num_bins = edges.numel() - 1
    index = torch.bucketize(probs, edges.float().cpu(), right=False) - 1
    inside = (index >= 0) & (index < num_bins)
    class_ids = torch.arange(num_classes).expand(num_samples, num_classes)
    flat = (class_ids * num_bins + index)[inside]
    is_class = (labels[:, None] == class_ids).double()[inside]
    size = num_classes * num_bins
    counts = torch.bincount(flat, minlength=size).double()
    conf_sums = torch.bincount(flat, weights=probs.double()[inside], minlength=size)
    hit_sums = torch.bincount(flat, weights=is_class, minlength=size)
    shape = (num_classes, num_bins)
    return BinStatistics(
        counts.view(shape), conf_sums.view(shape), hit_sums.view(shape), num_samples
    )


def check_ue_weight(ue_weight: str) -> str:
    """Validate the under-confidence weight name (see :data:`UE_WEIGHTS`)."""
    if ue_weight not in UE_WEIGHTS:
        raise ValueError(
            f'ue_weight must be one of {UE_WEIGHTS}, got '
            f"{ue_weight!r} ('confidence' is the RankMixup/MbLS "
            'evaluation code)'
        )
    return ue_weight


def binned_errors(
    stats: BinStatistics, ue_weight: str = 'confidence'
) -> Dict[str, float]:
    """Expected, over- and under-confidence errors from bin sums.

    Args:
        stats (BinStatistics): 1-D bin sums.
        ue_weight (str): Per-bin weight of the under-confidence error:
            ``'confidence'`` (``conf_b``, the RankMixup/MbLS evaluation code)
            or ``'one_minus_confidence'`` (``1 - conf_b``). Defaults to
            ``'confidence'``.

    Returns:
        dict: ``ece``, ``oe``, ``ue`` as fractions (not percent).
    """
    check_ue_weight(ue_weight)
    if stats.total <= 0:
        raise ValueError('cannot compute a calibration error over 0 samples')
    proportion = stats.counts / stats.total
    acc = stats.bin_accuracy
    conf = stats.bin_confidence
    gap = conf - acc
    weight = conf if ue_weight == 'confidence' else 1 - conf
    return dict(
        ece=float((proportion * gap.abs()).sum()),
        oe=float((proportion * conf * gap.clamp_min(0)).sum()),
        ue=float((proportion * weight * (-gap).clamp_min(0)).sum()),
    )


def classwise_error(stats: BinStatistics) -> float:
    """Classwise ECE (mean over classes) from ``(K, num_bins)`` bin sums."""
    if stats.total <= 0:
        raise ValueError('cannot compute a calibration error over 0 samples')
    proportion = stats.counts / stats.total
    gap = (stats.bin_confidence - stats.bin_accuracy).abs()
    return float((proportion * gap).sum(dim=1).mean())


def ece_sampling_floor(
    confidences: torch.Tensor,
    num_bins: int = 15,
    draws: int = 200,
    seed: int = 0,
) -> Dict[str, float]:
    """ECE that a perfectly calibrated model with these confidences shows on
    a test set of this size.

    Each draw makes every prediction correct with probability equal to its
    confidence (so the model is calibrated by construction) and measures the
    equal-width ECE; the mean over draws is the ECE that finite test sets
    alone produce. An ECE near it cannot be told apart from perfect
    calibration, and a ratio of two ECEs near it says little.

    Args:
        confidences (torch.Tensor): Top-label confidences in ``[0, 1]``,
            shape ``(N,)``.
        num_bins (int): Number of equal-width bins. Defaults to 15.
        draws (int): Number of simulated test sets (>= 2). Defaults to 200.
        seed (int): Seed of the draws. Defaults to 0.

    Returns:
        dict: ``mean`` and ``std`` (sample std over the draws) of the ECE, as
        fractions.
    """
    if not isinstance(draws, int) or draws < 2:
        raise ValueError(f'draws must be an int >= 2, got {draws!r}')
    confidences = confidences.detach().reshape(-1).float().cpu()
    if confidences.numel() == 0:
        raise ValueError('cannot compute a calibration error over 0 samples')
    if confidences.min() < 0 or confidences.max() > 1:
        raise ValueError(
            'confidences must lie in [0, 1], got values in '
            f'[{float(confidences.min())}, {float(confidences.max())}]'
        )
    generator = torch.Generator().manual_seed(seed)
    edges = equal_width_edges(num_bins)
    eces = []
    for _ in range(draws):
        correct = torch.rand(confidences.shape, generator=generator) < confidences
        eces.append(binned_errors(bin_statistics(confidences, correct, edges))['ece'])
    eces = torch.tensor(eces, dtype=torch.float64)
    return dict(mean=float(eces.mean()), std=float(eces.std()))


def top_label(probs: torch.Tensor, labels: torch.Tensor):
    """Confidence (max probability) and correctness of the arg-max prediction.

    Args:
        probs (torch.Tensor): Probabilities, shape ``(N, K)``.
        labels (torch.Tensor): Labels, shape ``(N,)``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``float32`` confidences and bool
        correctness, both of shape ``(N,)``.
    """
    confidences, predictions = probs.float().max(dim=1)
    return confidences, predictions == labels.to(predictions.device)


def negative_log_likelihood_sum(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over samples of ``-log max(p_y, MIN_PROBABILITY)`` in float64."""
    picked = probs.double().gather(1, labels.long().view(-1, 1)).squeeze(1)
    return float(-picked.clamp_min(MIN_PROBABILITY).log().sum())


def calibration_report(
    probs: torch.Tensor,
    labels: torch.Tensor,
    num_bins: int = 15,
    from_logits: bool = False,
    ue_weight: str = 'confidence',
) -> Dict[str, float]:
    """Every calibration number for a set of predictions.

    Args:
        probs (torch.Tensor): Probabilities, shape ``(N, K)``: each row in
            ``[0, 1]`` summing to 1 (logits raise a ``ValueError`` unless
            ``from_logits=True``).
        labels (torch.Tensor): Labels, shape ``(N,)``.
        num_bins (int): Number of bins for all binned errors. Defaults to 15.
        from_logits (bool): ``probs`` are logits; their softmax is used.
            Defaults to False.
        ue_weight (str): Under-confidence weight, see :func:`binned_errors`.
            Defaults to ``'confidence'``.

    Returns:
        dict: ``accuracy``, ``ece``, ``aece``, ``cece``, ``oe``, ``ue`` as
        fractions and ``nll`` (mean negative log-likelihood).
    """
    if from_logits and probs.dim() == 2:
        probs = probs.float().softmax(dim=1)
    check_probabilities(
        probs,
        labels,
        fix=f'pass from_logits=True to calibration_report, or {SOFTMAX_FIX}',
    )
    labels = labels.long()
    edges = equal_width_edges(num_bins)
    confidences, correct = top_label(probs, labels)
    report = binned_errors(bin_statistics(confidences, correct, edges), ue_weight)
    report['aece'] = binned_errors(
        bin_statistics(confidences, correct, equal_mass_edges(confidences, num_bins))
    )['ece']
    report['cece'] = classwise_error(classwise_bin_statistics(probs, labels, edges))
    report['nll'] = negative_log_likelihood_sum(probs, labels) / len(labels)
    report['accuracy'] = float(correct.double().mean())
    return report
