"""The NAS-Bench-201 accuracy table shipped with the package.

``tables/nb201_acc.npz`` holds the 15,625 NB201 architectures (op indices, NATS
benchmark index order) and their test accuracies after 200 epochs, averaged over
the benchmark's seeds: CIFAR-10 (``ori-test``), CIFAR-100 and ImageNet16-120
(``x-test``). Made by ``benchmarks/nas_nb201_table.py`` from the NATS-Bench
extraction of v-tao/nats-bench-landscape (``nats_bench.csv``, commit b307ae5).
"""

import os.path as osp
from typing import Dict, Tuple

import numpy as np

TABLE_PATH = osp.join(osp.dirname(__file__), 'tables', 'nb201_acc.npz')
DATASETS = ('cifar10', 'cifar100', 'imagenet16-120')


class NB201Table:
    """Look up NB201 test accuracies by architecture or benchmark index.

    Args:
        path (str): The ``.npz`` table. Defaults to the packaged one.
    """

    def __init__(self, path: str = TABLE_PATH):
        with np.load(path) as data:
            self.codes = data['codes'].astype(np.int64)
            self.acc = data['acc']
        self._index: Dict[Tuple[int, ...], int] = {
            tuple(int(v) for v in c): i for i, c in enumerate(self.codes)
        }

    def __len__(self) -> int:
        return len(self.codes)

    def index(self, arch) -> int:
        """Benchmark index of ``arch`` (six op indices)."""
        return self._index[tuple(int(a) for a in arch)]

    def accuracy(self, arch, dataset: str = 'cifar10') -> float:
        """Test accuracy (%) of ``arch`` on ``dataset``."""
        if dataset not in DATASETS:
            raise ValueError(f'unknown dataset {dataset!r}; valid: {list(DATASETS)}')
        return float(self.acc[self.index(arch), DATASETS.index(dataset)])
