"""Post-training quantization: range observers, the calibration loop, AdaRound
and unit-wise (BRECQ / UWC) reconstruction of a ``QuantizedModel``, and the
limited-data joint KD stage of Yuan et al.

The result is the state of an ordinary calibrated ``QuantizedModel`` (LSQ steps,
``initialized = 1``, weights on their grid), saved, evaluated and exported as a
QAT checkpoint is; ``tools/ptq.py`` runs the whole pipeline from a config.
"""

from .adaround import (
    AdaRoundQuantizer,
    LinearTempDecay,
    init_v,
    rectified_sigmoid,
    rounding_regularizer,
)
from .calibration import (
    cache_batches,
    calibrate_ranges,
    model_batches,
    quantizers_off,
    set_scale,
)
from .kd import distill, images_per_class, kd_loss, limited_loader
from .observers import (
    BaseObserver,
    EMAMinMaxObserver,
    MinMaxObserver,
    MSEObserver,
    PercentileObserver,
    build_observer,
)
from .reconstruct import reconstruct, reconstruction_loss, select_units
from .sqnr import layer_sqnr, sqnr_db

__all__ = [
    'AdaRoundQuantizer',
    'LinearTempDecay',
    'init_v',
    'rectified_sigmoid',
    'rounding_regularizer',
    'cache_batches',
    'calibrate_ranges',
    'distill',
    'images_per_class',
    'kd_loss',
    'limited_loader',
    'layer_sqnr',
    'sqnr_db',
    'model_batches',
    'quantizers_off',
    'set_scale',
    'BaseObserver',
    'MinMaxObserver',
    'EMAMinMaxObserver',
    'PercentileObserver',
    'MSEObserver',
    'build_observer',
    'reconstruct',
    'reconstruction_loss',
    'select_units',
]
