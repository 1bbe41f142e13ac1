"""Confidence calibration: metrics (ECE family), reliability diagrams,
temperature scaling and calibration training (RankMixup, focal, MbLS).

``rankmixup_classifier`` needs mmpretrain and is imported only when it is
installed; everything else needs torch and mmengine only.
"""

from mmcompress.utils import has_package

from .functional import (
    BinStatistics,
    bin_statistics,
    binned_errors,
    calibration_report,
    classwise_bin_statistics,
    classwise_error,
    ece_sampling_floor,
    equal_mass_edges,
    equal_width_edges,
)
from .losses import MarginLogitSmoothLoss, SoftmaxFocalLoss
from .metrics import ClsCalibrationMetric, SegCalibrationMetric
from .rankmixup_losses import MixupMarginRankingLoss, MixupNDCGLoss, mix_inputs
from .reliability_diagram import (
    ReliabilityDiagramHook,
    draw_reliability_diagram,
    publish_reliability_diagram,
)
from .temperature import (
    TemperatureScalingHook,
    collect_logits,
    find_logits_module,
    fit_temperature,
)

__all__ = [
    'BinStatistics',
    'bin_statistics',
    'binned_errors',
    'calibration_report',
    'classwise_bin_statistics',
    'classwise_error',
    'ece_sampling_floor',
    'equal_mass_edges',
    'equal_width_edges',
    'MarginLogitSmoothLoss',
    'SoftmaxFocalLoss',
    'ClsCalibrationMetric',
    'SegCalibrationMetric',
    'MixupMarginRankingLoss',
    'MixupNDCGLoss',
    'mix_inputs',
    'ReliabilityDiagramHook',
    'draw_reliability_diagram',
    'publish_reliability_diagram',
    'TemperatureScalingHook',
    'collect_logits',
    'find_logits_module',
    'fit_temperature',
]

if has_package('mmpretrain'):
    from .rankmixup_classifier import RankMixupClassifier  # noqa: F401

    __all__.append('RankMixupClassifier')
