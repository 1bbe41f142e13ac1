"""Small real data sets bundled in installable packages (no download).

* ``SklearnDigitsDataset``: the 1,797 real 8x8 handwritten digits of scikit-learn.
* ``FoolboxSamplesDataset``: the 20 labelled sample images per data set that foolbox
  3.3.4 ships (ImageNet with its class ids, CIFAR-10, CIFAR-100, MNIST,
  Fashion-MNIST); e.g. real ImageNet inputs for checking an exported model.
"""

import importlib.util
import os
import os.path as osp
import re
from typing import List, Optional

import numpy as np
from mmpretrain.datasets import BaseDataset

from mmcompress.registry import DATASETS

from .fashion_mnist_io import stratified_indices

FOOLBOX_SETS = ('imagenet', 'cifar10', 'cifar100', 'mnist', 'fashionMNIST')


def foolbox_data_dir() -> str:
    """Folder of foolbox's bundled sample images (without importing foolbox)."""
    spec = importlib.util.find_spec('foolbox')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            'foolbox is not installed; `pip install --no-deps foolbox==3.3.4` '
            '(tools/setup_env.sh does) to get its sample images'
        )
    return osp.join(list(spec.submodule_search_locations)[0], 'data')


def foolbox_samples(dataset: str = 'imagenet') -> List[dict]:
    """List foolbox's sample images of one data set, in index order.

    Args:
        dataset (str): One of :data:`FOOLBOX_SETS`.

    Returns:
        list[dict]: ``dict(img_path=..., gt_label=int)`` for each of the 20 images.
    """
    if dataset not in FOOLBOX_SETS:
        raise ValueError(f'dataset={dataset!r} is not valid; use one of {FOOLBOX_SETS}')
    pattern = re.compile(rf'^{dataset}_(\d+)_(\d+)\.\w+$')
    folder = foolbox_data_dir()
    found = sorted(
        (int(m.group(1)), int(m.group(2)), name)
        for name in os.listdir(folder)
        if (m := pattern.match(name))
    )
    if not found:
        raise FileNotFoundError(f'no {dataset} samples in {folder}')
    return [
        dict(img_path=osp.join(folder, name), gt_label=label)
        for _, label, name in found
    ]


@DATASETS.register_module()
class FoolboxSamplesDataset(BaseDataset):
    """The 20 labelled sample images foolbox ships for one data set.

    Images are read by the pipeline (start it with ``LoadImageFromFile``).

    Args:
        dataset (str): One of ``'imagenet'`` (class ids of ImageNet-1k),
            ``'cifar10'``, ``'cifar100'``, ``'mnist'``, ``'fashionMNIST'``.
            Defaults to ``'imagenet'``.
        **kwargs: Passed to :class:`mmpretrain.datasets.BaseDataset`.
    """

    NUM_CLASSES = dict(
        imagenet=1000, cifar10=10, cifar100=100, mnist=10, fashionMNIST=10
    )

    def __init__(self, dataset: str = 'imagenet', **kwargs) -> None:
        if dataset not in FOOLBOX_SETS:
            raise ValueError(
                f'dataset={dataset!r} is not valid; use one of {FOOLBOX_SETS}'
            )
        self.dataset = dataset
        kwargs.setdefault('test_mode', True)
        kwargs.setdefault(
            'metainfo', dict(classes=[str(i) for i in range(self.NUM_CLASSES[dataset])])
        )
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self) -> List[dict]:
        """One entry per sample image."""
        return foolbox_samples(self.dataset)


@DATASETS.register_module()
class SklearnDigitsDataset(BaseDataset):
    """scikit-learn's 1,797 real 8x8 digits as uint8 images (values x16).

    Args:
        split (str): ``'train'``, ``'test'`` or ``'all'``. Defaults to ``'train'``.
        test_size (int): Size of the stratified test split. Defaults to 297.
        seed (int): Seed of the split. Defaults to 0.
        **kwargs: Passed to :class:`mmpretrain.datasets.BaseDataset`.
    """

    METAINFO = {'classes': tuple(str(i) for i in range(10))}
    SPLITS = ('train', 'test', 'all')

    def __init__(
        self, split: str = 'train', test_size: int = 297, seed: int = 0, **kwargs
    ) -> None:
        if split not in self.SPLITS:
            raise ValueError(f'split={split!r} is not valid; use one of {self.SPLITS}')
        self.split, self.test_size, self.seed = split, test_size, seed
        kwargs.setdefault('test_mode', split == 'test')
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self) -> List[dict]:
        """Images and labels of the split."""
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
        labels = digits.target
        indices: Optional[np.ndarray] = np.arange(len(labels))
        if self.split != 'all':
            test = stratified_indices(labels, self.test_size, self.seed)
            indices = test if self.split == 'test' else np.setdiff1d(indices, test)
        return [dict(img=images[i], gt_label=int(labels[i])) for i in indices]
