"""Fake quantizers: one file per method, all implementing :class:`BaseQuantizer`."""

from .base import AffineQParams, BaseQuantizer
from .daq import DAQQuantizer
from .ewgs import EWGSQuantizer
from .lsq import LSQQuantizer
from .n2uq import N2UQActQuantizer, N2UQWeightQuantizer
from .uniform import UniformSTEQuantizer

__all__ = [
    'AffineQParams',
    'BaseQuantizer',
    'UniformSTEQuantizer',
    'LSQQuantizer',
    'EWGSQuantizer',
    'DAQQuantizer',
    'N2UQActQuantizer',
    'N2UQWeightQuantizer',
]
