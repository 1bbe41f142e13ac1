"""Fashion-MNIST for mmpretrain, read from the Debian package's IDX files."""

from typing import List, Optional

import numpy as np
from mmpretrain.datasets import BaseDataset

from mmcompress.registry import DATASETS

from .fashion_mnist_io import (
    FASHION_MNIST_CLASSES,
    fashion_mnist_root,
    load_fashion_mnist,
    stratified_indices,
)

SPLITS = ('train', 'val', 'trainval', 'test')


@DATASETS.register_module()
class FashionMNISTDataset(BaseDataset):
    """Fashion-MNIST from local IDX files (28x28 grayscale, 10 classes).

    Unlike mmpretrain's ``FashionMNIST`` this never downloads: it reads the files
    installed by ``apt-get install dataset-fashion-mnist``.

    Args:
        data_root (str, optional): Folder with ``{train,t10k}-{images-idx3,
            labels-idx1}-ubyte[.gz]``. Defaults to ``$MMCOMPRESS_FASHION_MNIST`` or
            ``/usr/share/datasets/fashion-mnist``.
        split (str): ``'train'`` (the 60k training images minus the validation
            hold-out), ``'val'`` (the hold-out), ``'trainval'`` (all 60k) or
            ``'test'`` (the official 10k test images). Defaults to ``'train'``.
        val_size (int): Size of the stratified hold-out taken from the training
            images for ``'val'``. Defaults to 5000.
        subset_size (int, optional): Keep a class-balanced subset of this many
            samples (fast tests and benchmarks). Defaults to None (all).
        seed (int): Seed of the hold-out and subset choice. Defaults to 0.
        **kwargs: Passed to :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``test_mode``...).
    """

    METAINFO = {'classes': FASHION_MNIST_CLASSES}

    def __init__(
        self,
        data_root: Optional[str] = None,
        split: str = 'train',
        val_size: int = 5000,
        subset_size: Optional[int] = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f'split={split!r} is not valid; use one of {SPLITS}')
        if not 0 < val_size < 60000:
            raise ValueError(f'val_size={val_size} must be in (0, 60000)')
        if subset_size is not None and subset_size <= 0:
            raise ValueError(f'subset_size={subset_size} must be positive or None')
        self.split = split
        self.val_size = val_size
        self.subset_size = subset_size
        self.seed = seed
        kwargs.setdefault('test_mode', split in ('val', 'test'))
        super().__init__(ann_file='', data_root=fashion_mnist_root(data_root), **kwargs)

    def load_data_list(self) -> List[dict]:
        """Images and labels of the selected split."""
        images, labels = load_fashion_mnist(
            'test' if self.split == 'test' else 'train', self.data_root
        )
        indices = np.arange(len(labels))
        if self.split in ('train', 'val'):
            held_out = stratified_indices(labels, self.val_size, self.seed)
            indices = (
                held_out if self.split == 'val' else np.setdiff1d(indices, held_out)
            )
        if self.subset_size is not None and self.subset_size < len(indices):
            keep = stratified_indices(labels[indices], self.subset_size, self.seed + 1)
            indices = indices[keep]
        return [dict(img=images[i], gt_label=int(labels[i])) for i in indices]
