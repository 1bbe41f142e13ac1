"""Domain-adaptive segmentation with GMM prototypes (BiSMAP, ACM MM 2022).

Numerics (no OpenMMLab needed): per-class diagonal GMMs fitted by batched EM
(``gmm``), k-means (``kmeans``), pseudo-label rules (``pseudo_label``), source
transferability weights (``transfer``) and the self-training losses
(``losses``). With mmseg installed: the unlabeled-target dataset, the
self-training segmentor and the pseudo-label hook. See docs/adapt/bismap.md.
"""

from mmcompress.utils import has_package

from .gmm import ClassGMM, fit_class_gmms
from .kmeans import batched_kmeans
from .losses import (
    consistency_kl,
    consistency_ramp,
    distill_kl,
    pixel_weighted_ce,
    symmetric_ce,
)
from .pseudo_label import (
    ClassFeatureBank,
    class_means,
    label_quality,
    prototype_scores,
    pseudo_labels,
    threshold_at_coverage,
)
from .transfer import TransferabilityWeights, transfer_weight

__all__ = [
    'ClassGMM',
    'fit_class_gmms',
    'batched_kmeans',
    'consistency_kl',
    'consistency_ramp',
    'distill_kl',
    'pixel_weighted_ce',
    'symmetric_ce',
    'ClassFeatureBank',
    'class_means',
    'label_quality',
    'prototype_scores',
    'pseudo_labels',
    'threshold_at_coverage',
    'TransferabilityWeights',
    'transfer_weight',
]

if has_package('mmseg'):
    from .datasets import UDAPairDataset, UnlabeledTargetDataset  # noqa: F401
    from .hooks import PseudoLabelHook  # noqa: F401
    from .segmentor import BiSMAPSegmentor  # noqa: F401
