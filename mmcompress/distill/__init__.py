"""Knowledge distillation: ``DistillModel``, feature recording, adapters,
distillation losses, plain student checkpoints (a hook), FFL (online mutual
distillation, imported only when mmpretrain is installed) and dense-detector
head distillation (BCKD, imported only when mmdet is installed)."""

from mmcompress.utils import has_package

from . import losses  # noqa: F401
from .adapters import ConvBNAdapter, EntryAdapter, LinearAdapter
from .distill_model import DistillModel
from .preprocessor import DistillDataPreprocessor
from .record_spec import RecordSpec
from .recorders import FeatureRecorder, StopForward
from .schedule import LossWeightSchedule
from .student_checkpoint import (
    StudentCheckpointHook,
    save_student_checkpoint,
    student_checkpoint_path,
)

if has_package('mmpretrain'):
    from . import ffl  # noqa: F401  (FFLClassifier, needs mmpretrain)
if has_package('mmdet'):
    # DenseHeadDistillLoss (BCKD / LD-style KD of dense detectors)
    from . import dense_detection  # noqa: F401

__all__ = [
    'DistillModel',
    'DistillDataPreprocessor',
    'LossWeightSchedule',
    'FeatureRecorder',
    'RecordSpec',
    'StopForward',
    'ConvBNAdapter',
    'LinearAdapter',
    'EntryAdapter',
    'StudentCheckpointHook',
    'save_student_checkpoint',
    'student_checkpoint_path',
]
