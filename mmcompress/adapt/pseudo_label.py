"""Target pseudo-labels from class scores, and the source feature sampling.

Three rules, all ``label = argmax_c score_c`` with pixels whose best score is
below a threshold set to ``ignore_index``:

* **GMM** (BiSMAP): ``score_c = log p(f | class c)`` under the class's
  ``K``-component diagonal GMM (:class:`~.gmm.ClassGMM`); the official threshold
  is an absolute log-likelihood of 100 (``--threshold 100``).
* **Single isotropic prototype** (``K=1``): ``score_c = -||f - m_c||^2 / 2``, the
  log-likelihood (up to a constant) of one unit-variance Gaussian per class.
* **Softmax threshold**: ``score_c = softmax(logits)_c``.

:func:`threshold_at_coverage` finds, for any rule, the threshold that keeps a
given share of the pixels, so that rules are compared at matched coverage.
"""

from typing import List, Optional, Sequence

import torch

from .gmm import check_features


def pseudo_labels(
    scores: torch.Tensor, threshold: Optional[float] = None, ignore_index: int = 255
) -> torch.Tensor:
    """``argmax_c scores``; pixels whose best score is below ``threshold`` ignored.

    Args:
        scores (Tensor): ``(N, C)`` class scores (log-likelihoods, negative
            distances or probabilities).
        threshold (float, optional): Keep pixels with ``max_c score >= threshold``.
            None keeps all.
        ignore_index (int): Label of the dropped pixels. Defaults to 255.

    Returns:
        Tensor: ``(N,)`` int64 labels.
    """
    best, labels = scores.max(dim=1)
    if threshold is not None:
        labels = torch.where(best >= threshold, labels, ignore_index)
    return labels


def threshold_at_coverage(best_scores: torch.Tensor, coverage: float) -> float:
    """The threshold that keeps the top ``coverage`` share of ``best_scores``.

    Args:
        best_scores (Tensor): ``(N,)`` best class score per pixel.
        coverage (float): Share of pixels to keep, in (0, 1].

    Returns:
        float: Pixels with ``score >= threshold`` make up ``coverage`` of all
        (up to ties).
    """
    if not 0 < coverage <= 1:
        raise ValueError(f'coverage must be in (0, 1], got {coverage}.')
    keep = max(1, round(coverage * best_scores.numel()))
    return float(best_scores.flatten().float().topk(keep).values[-1])


def prototype_scores(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``-||f - m_c||^2 / 2``: the single isotropic prototype (K=1) rule.

    Args:
        features (Tensor): ``(N, D)`` features.
        means (Tensor): ``(C, D)`` class means; a NaN row marks a class without
            samples (score ``-inf``).

    Returns:
        Tensor: ``(N, C)`` scores.
    """
    check_features(features, means.shape[1], 'prototype_scores')
    missing = torch.isnan(means).any(1)
    m = means.nan_to_num(0.0)
    dist = (
        (features * features).sum(1, keepdim=True) - 2 * features @ m.T + (m * m).sum(1)
    )
    return (-0.5 * dist).masked_fill(missing, float('-inf'))


def class_means(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(C, D)`` mean feature per class; NaN rows for classes without samples."""
    return torch.stack(
        [
            f.float().mean(0) if len(f) else f.new_full(f.shape[1:], float('nan'))
            for f in features
        ]
    )


class ClassFeatureBank:
    """Collects per-class features of correctly predicted source pixels.

    As the official code: a pixel of class ``c`` is kept if its prediction is
    right (``pred == label``), then a random share ``ratios[c]`` of them (to
    balance frequent and rare classes). At most ``max_per_class`` are kept per
    class (a uniform random subset once more arrive; official: 300k).

    Args:
        num_classes (int): Number of classes.
        ratios (Sequence[float], optional): Per-class sampling ratio in [0, 1];
            None: 1 for all.
        max_per_class (int): Cap per class. Defaults to 300000.
        seed (int): Seed of the sampling. Defaults to 0.
    """

    def __init__(
        self,
        num_classes: int,
        ratios: Optional[Sequence[float]] = None,
        max_per_class: int = 300000,
        seed: int = 0,
    ) -> None:
        ratios = [1.0] * num_classes if ratios is None else list(ratios)
        if len(ratios) != num_classes or not all(0 <= r <= 1 for r in ratios):
            raise ValueError(
                f'ratios must hold {num_classes} values in [0, 1], got {ratios}.'
            )
        self.num_classes, self.ratios = num_classes, ratios
        self.max_per_class = max_per_class
        self.generator = torch.Generator().manual_seed(seed)
        self._store: List[List[torch.Tensor]] = [[] for _ in range(num_classes)]
        self._counts = [0] * num_classes

    def push(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        preds: Optional[torch.Tensor] = None,
    ) -> None:
        """Add ``(N, D)`` features with their ``(N,)`` labels and predictions."""
        check_features(features, None, 'ClassFeatureBank.push')
        features = features.detach().float().cpu()
        labels, keep = labels.cpu(), torch.ones(len(labels), dtype=torch.bool)
        if preds is not None:
            keep = preds.cpu() == labels
        for c in range(self.num_classes):
            idx = torch.nonzero(keep & (labels == c)).flatten()
            take = int(len(idx) * self.ratios[c])
            if take == 0:
                continue
            idx = idx[torch.randperm(len(idx), generator=self.generator)[:take]]
            self._store[c].append(features[idx])
            self._counts[c] += take
            if self._counts[c] > 2 * self.max_per_class:
                self._shrink(c)

    def _shrink(self, c: int) -> None:
        feats = torch.cat(self._store[c])
        pick = torch.randperm(len(feats), generator=self.generator)
        self._store[c] = [feats[pick[: self.max_per_class]]]
        self._counts[c] = min(len(feats), self.max_per_class)

    def features(self) -> List[torch.Tensor]:
        """Per-class ``(n_c, D)`` tensors (at most ``max_per_class`` each)."""
        out = []
        for c in range(self.num_classes):
            if self._counts[c] > self.max_per_class:
                self._shrink(c)
            out.append(torch.cat(self._store[c]) if self._store[c] else None)
        dim = next((f.shape[1] for f in out if f is not None), 0)
        return [f if f is not None else torch.zeros(0, dim) for f in out]


def label_quality(
    pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> dict:
    """Coverage, pixel accuracy and mIoU of pseudo-labels against the truth.

    Accuracy and IoU are taken over the pixels that carry both a pseudo-label
    and a true label; classes absent from both are left out of the mean.

    Args:
        pred (Tensor): Pseudo-labels (any shape).
        gt (Tensor): True labels, same shape.
        num_classes (int): Number of classes.
        ignore_index (int): Unlabelled value in both. Defaults to 255.

    Returns:
        dict: ``coverage`` (share of truly labelled pixels that got a
        pseudo-label), ``acc`` and ``miou`` in percent.
    """
    pred, gt = pred.flatten().long(), gt.flatten().long()
    has_gt = gt != ignore_index
    both = has_gt & (pred != ignore_index)
    p, g = pred[both], gt[both]
    conf = torch.bincount(g * num_classes + p, minlength=num_classes**2)
    conf = conf.view(num_classes, num_classes).double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return dict(
        coverage=100.0 * float(both.sum()) / max(int(has_gt.sum()), 1),
        acc=100.0 * float(inter.sum()) / max(float(conf.sum()), 1.0),
        miou=100.0 * float((inter[present] / union[present]).mean())
        if present.any()
        else 0.0,
    )
