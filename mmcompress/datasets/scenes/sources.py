"""Real image content the scene generator composes: Fashion-MNIST items and photos.

Both sources are installed locally and nothing is downloaded:

* Fashion-MNIST (MIT licence, Zalando Research), read by
  :mod:`mmcompress.datasets.fashion_mnist_io` from the IDX files of the Debian
  package ``dataset-fashion-mnist``.
* Photographs and textures that ship inside the scikit-image wheel
  (``skimage/data/*.png|jpg``). They are read from the package directory by file
  name, never through ``skimage.data``'s fetchers, so an image that is not in the
  wheel raises instead of triggering a download.
"""

import os.path as osp
from functools import lru_cache
from typing import Dict, Tuple

import cv2
import numpy as np

from ..fashion_mnist_io import FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = [
    'BACKGROUND_PHOTOS',
    'FASHION_MNIST_CLASSES',
    'load_background',
    'load_fashion_mnist',
    'skimage_data_dir',
]

# Bundled scikit-image photos: file name in ``skimage/data`` and licence as stated
# in the docstring of the matching ``skimage.data`` function (scikit-image 0.26).
# Bundled images whose docstring states no licence (moon) or only a data-set
# citation (the Middlebury motorcycle stereo pair) are not used.
BACKGROUND_PHOTOS: Dict[str, Tuple[str, str]] = {
    'astronaut': (
        'astronaut.png',
        'public domain (NASA Great Images, astronaut Eileen Collins)',
    ),
    'chelsea': ('chelsea.png', 'CC0 (photographer Stefan van der Walt)'),
    'coffee': ('coffee.png', 'CC0 (photographer Rachel Michetti)'),
    'rocket': ('rocket.jpg', 'public domain (SpaceX, DSCOVR launch)'),
    'hubble_deep_field': (
        'hubble_deep_field.jpg',
        'public domain (NASA, Hubble eXtreme Deep Field)',
    ),
    'immunohistochemistry': (
        'ihc.png',
        'no known copyright restrictions (CMMI microscopy)',
    ),
    'camera': ('camera.png', 'CC0 (photographer Lav Varshney)'),
    'coins': (
        'coins.png',
        'no known copyright restrictions (Brooklyn Museum collection)',
    ),
    'cell': ('cell.png', 'CC0 (Paul Mueller, quantitative phase image)'),
    'brick': ('brick.png', 'CC0 (CC0Textures Bricks25)'),
    'grass': ('grass.png', 'CC0 (grass texture)'),
    'gravel': ('gravel.png', 'CC0 (CC0Textures Gravel04)'),
}


def skimage_data_dir() -> str:
    """Directory of the images bundled in the installed scikit-image wheel."""
    try:
        import skimage
    except ImportError as error:
        raise ImportError(
            'The scene generator takes its background photos from '
            'scikit-image; install it with `pip install scikit-image`.'
        ) from error
    return osp.join(osp.dirname(skimage.__file__), 'data')


@lru_cache(maxsize=None)
def load_background(name: str) -> np.ndarray:
    """Load one bundled scikit-image photo as an RGB ``uint8`` array.

    Args:
        name (str): A key of :data:`BACKGROUND_PHOTOS`.

    Returns:
        np.ndarray: Read-only array of shape (H, W, 3); grey images are
        replicated into three channels.
    """
    if name not in BACKGROUND_PHOTOS:
        raise ValueError(
            f'Background photo {name!r} is not valid; choose '
            f'from {sorted(BACKGROUND_PHOTOS)}.'
        )
    path = osp.join(skimage_data_dir(), BACKGROUND_PHOTOS[name][0])
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} is not in the installed scikit-image wheel; only photos '
            'shipped in the wheel are used (nothing is downloaded).'
        )
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f'OpenCV could not decode {path}.')
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image
