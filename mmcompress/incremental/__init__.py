"""Class-incremental semantic segmentation (CISS) on mmseg: splits, the step
dataset wrapper, the incremental segmentor (DKD, MiB, fine-tuning) and the
old/new/all/hIoU metric. Guide: ``docs/incremental/ciss.md``."""

from .dataset import IncrementalSegDataset
from .metric import IncrementalIoUMetric
from .segmentor import IncrementalEncoderDecoder
from .split import parse_split

__all__ = [
    'IncrementalEncoderDecoder',
    'IncrementalIoUMetric',
    'IncrementalSegDataset',
    'parse_split',
]
