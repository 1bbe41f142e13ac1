"""Datasets built from the real data this project can install."""

from mmcompress.utils import has_package

from . import scenes  # noqa: F401  (dataset classes register per downstream)
from .sr_photos import SRPhotoDataset  # noqa: F401

if has_package('mmpretrain'):
    from .fashion_mnist import FashionMNISTDataset  # noqa: F401
    from .small_sets import FoolboxSamplesDataset, SklearnDigitsDataset  # noqa: F401
