"""Data mistakes: damaged Fashion-MNIST files, scene options that cannot be met."""

import gzip

import numpy as np
import pytest
from mmengine.logging import MMLogger

from mmcompress.datasets.fashion_mnist_io import load_fashion_mnist, read_idx
from mmcompress.datasets.scenes import generate_scenes

HEADER = (0x0803).to_bytes(4, 'big') + b''.join(
    n.to_bytes(4, 'big') for n in (10, 28, 28)
)
PAYLOAD = np.arange(10 * 28 * 28, dtype=np.uint8).tobytes()


def test_truncated_gz_fashion_mnist_file(tmp_path):
    """A Fashion-MNIST .gz file cut short (interrupted copy or download).

    Message: cannot be read (EOFError: Compressed file ended before the end-of-stream
    """
    packed = gzip.compress(HEADER + PAYLOAD)
    path = tmp_path / 'train-images-idx3-ubyte.gz'
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(
        ValueError,
        match=rf'{path} cannot be read \(EOFError: Compressed file '
        r'ended before the end-of-stream marker was reached\): the '
        'file is damaged or truncated',
    ):
        read_idx(str(tmp_path / 'train-images-idx3-ubyte'))


def test_truncated_fashion_mnist_file(tmp_path):
    """An uncompressed Fashion-MNIST IDX file with fewer bytes than its header says.

    Message: holds 3936 bytes but its header announces shape (10, 28, 28) (7856 bytes)
    """
    (tmp_path / 't10k-images-idx3-ubyte').write_bytes((HEADER + PAYLOAD)[:3936])
    (tmp_path / 't10k-labels-idx1-ubyte').write_bytes(
        (0x0801).to_bytes(4, 'big') + (10).to_bytes(4, 'big') + bytes(10)
    )
    with pytest.raises(
        ValueError,
        match=r't10k-images-idx3-ubyte holds 3936 bytes but its '
        r'header announces shape \(10, 28, 28\) \(7856 bytes\)',
    ):
        load_fashion_mnist('test', str(tmp_path))


def test_scenes_with_more_garments_than_fit(tmp_path, capsys):
    """generate_scenes --min-objects 40 on 128-pixel images (only about 27 fit).

    Message: min_objects=40 was asked, but 2 of 2 images hold fewer garments
    """
    MMLogger.get_instance('test_bad_input_scenes')
    meta = generate_scenes(
        'det', str(tmp_path), num_train=1, num_val=1, min_objects=40, max_objects=40
    )
    text = capsys.readouterr().out
    assert 'min_objects=40 was asked, but 2 of 2 images hold fewer garments' in text
    assert 'lower min_objects or min_visible_fraction' in text
    assert sum(meta['num_instances'].values()) < 80
