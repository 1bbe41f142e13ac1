"""Super-resolution models (FSRCNN, the PISR teacher), their data preprocessor
and image-quality metric; see ``docs/models/pisr.md``."""

from .data import SRDataPreprocessor
from .fsrcnn import FSRCNN
from .metrics import SRQualityMetric
from .pisr import InitStudentFromTeacherHook, PISRTeacher

__all__ = [
    'FSRCNN',
    'InitStudentFromTeacherHook',
    'PISRTeacher',
    'SRDataPreprocessor',
    'SRQualityMetric',
]
