"""Reading Fashion-MNIST IDX files (numpy only; shared by the datasets and scenes)."""

import gzip
import os
import os.path as osp
import zlib
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

DEFAULT_ROOT = '/usr/share/datasets/fashion-mnist'
ROOT_ENV = 'MMCOMPRESS_FASHION_MNIST'
FASHION_MNIST_CLASSES = (
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
)
_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (``path`` or ``path + '.gz'``) into a numpy array.

    Args:
        path (str): File path, without or with ``.gz``.

    Returns:
        np.ndarray: uint8 array with the shape stored in the file's header.
    """
    for candidate in (path, path + '.gz'):
        if osp.isfile(candidate):
            break
    else:
        raise FileNotFoundError(path)
    opener = gzip.open if candidate.endswith('.gz') else open
    try:
        with opener(candidate, 'rb') as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # bad or truncated gzip
        raise ValueError(
            f'{candidate} cannot be read ({type(err).__name__}: {err}): the file '
            'is damaged or truncated. Reinstall it (`apt-get install --reinstall '
            'dataset-fashion-mnist`) or copy it again.'
        ) from None
    if len(data) < 4:
        raise ValueError(
            f'{candidate} is not a uint8 IDX file: {len(data)} bytes, '
            'shorter than the 4-byte header'
        )
    magic = int.from_bytes(data[0:4], 'big')
    if magic >> 8 != 0x08:  # 0x08: unsigned byte payload
        raise ValueError(f'{path} is not a uint8 IDX file (magic {magic:#x})')
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(
            f'{candidate} holds {len(data)} bytes but its header announces '
            f'shape {tuple(shape)} ({expected} bytes): the file is truncated or '
            'damaged. Reinstall it (`apt-get install --reinstall '
            'dataset-fashion-mnist`) or copy it again.'
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_root(data_root: Optional[str] = None) -> str:
    """The folder to read: ``data_root``, else ``$MMCOMPRESS_FASHION_MNIST``, else
    the Debian package's ``/usr/share/datasets/fashion-mnist`` (an empty value
    counts as unset)."""
    return data_root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT


@lru_cache(maxsize=4)
def load_fashion_mnist(
    split: str, data_root: Optional[str] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Load an official Fashion-MNIST split (cached, read-only arrays).

    Args:
        split (str): ``'train'`` (60,000 items) or ``'test'`` (10,000 items).
        data_root (str, optional): See :func:`fashion_mnist_root`.

    Returns:
        tuple[np.ndarray, np.ndarray]: uint8 images (N, 28, 28), int64 labels (N,).
    """
    if split not in _FILES:
        raise ValueError(
            f'Fashion-MNIST split {split!r} is not valid; use one of {sorted(_FILES)}'
        )
    root = fashion_mnist_root(data_root)
    image_file, label_file = (osp.join(root, name) for name in _FILES[split])
    try:
        images, labels = read_idx(image_file), read_idx(label_file)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f'Fashion-MNIST file {err}(.gz) not found in {root!r}. Install it '
            f'with `apt-get install dataset-fashion-mnist` (files go to '
            f'{DEFAULT_ROOT}), or set data_root / ${ROOT_ENV} to the folder '
            f'with the IDX files.'
        ) from None
    if len(images) != len(labels):
        raise ValueError(
            f'Fashion-MNIST {split} in {root} has {len(images)} '
            f'images but {len(labels)} labels'
        )
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Pick ``size`` indices with classes as balanced as possible.

    Args:
        labels (np.ndarray): Class id per sample.
        size (int): How many indices to return.
        seed (int): Seed of the random choice.

    Returns:
        np.ndarray: Sorted indices into ``labels``.
    """
    rng = np.random.default_rng(seed)
    per_class = [
        rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)
    ]
    # round-robin over the classes, so that every prefix is balanced
    order = [
        idx[k]
        for k in range(max(map(len, per_class)))
        for idx in per_class
        if k < len(idx)
    ]
    return np.sort(np.asarray(order[:size], dtype=np.int64))
