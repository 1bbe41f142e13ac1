"""FashionMNISTDataset and the small real sets: real files, splits, subsets, errors."""

import gzip

import numpy as np
import pytest

import mmcompress  # noqa: F401
from mmcompress.datasets import (
    FashionMNISTDataset,
    FoolboxSamplesDataset,
    SklearnDigitsDataset,
)
from mmcompress.datasets.fashion_mnist_io import (
    load_fashion_mnist,
    read_idx,
    stratified_indices,
)


def test_real_files_shapes_and_balance():
    images, labels = load_fashion_mnist('train')
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [6000] * 10
    test_images, test_labels = load_fashion_mnist('test')
    assert test_images.shape == (10000, 28, 28)
    assert np.bincount(test_labels).tolist() == [1000] * 10
    # real content: mean intensity of Fashion-MNIST train images is ~72.94
    assert images.mean() == pytest.approx(72.94, abs=0.05)


def test_splits_are_disjoint_and_cover_trainval():
    train = FashionMNISTDataset(split='train', val_size=500, subset_size=None)
    val = FashionMNISTDataset(split='val', val_size=500)
    assert len(train) == 59500 and len(val) == 500
    assert np.bincount(val.get_gt_labels()).tolist() == [50] * 10
    # disjoint: no image of val is the same array position as a train image
    val_imgs = {val.get_data_info(i)['img'].tobytes() for i in range(len(val))}
    hits = sum(
        train.get_data_info(i)['img'].tobytes() in val_imgs
        for i in range(0, len(train), 97)
    )
    assert hits == 0
    assert len(FashionMNISTDataset(split='trainval')) == 60000
    assert len(FashionMNISTDataset(split='test')) == 10000


def test_subset_is_balanced_and_deterministic():
    a = FashionMNISTDataset(split='test', subset_size=100, seed=3)
    b = FashionMNISTDataset(split='test', subset_size=100, seed=3)
    c = FashionMNISTDataset(split='test', subset_size=100, seed=4)
    assert np.bincount(a.get_gt_labels()).tolist() == [10] * 10
    assert all(
        np.array_equal(a.get_data_info(i)['img'], b.get_data_info(i)['img'])
        for i in range(100)
    )
    assert not all(
        np.array_equal(a.get_data_info(i)['img'], c.get_data_info(i)['img'])
        for i in range(100)
    )


def test_pipeline_output_is_a_1x28x28_tensor():
    ds = FashionMNISTDataset(
        split='test', subset_size=10, pipeline=[dict(type='PackInputs')]
    )
    item = ds[0]
    assert tuple(item['inputs'].shape) == (1, 28, 28)
    assert int(item['data_samples'].gt_label) == ds.get_gt_labels()[0]


def test_bad_arguments_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="split='training'.*valid"):
        FashionMNISTDataset(split='training')
    with pytest.raises(ValueError, match='subset_size=0'):
        FashionMNISTDataset(subset_size=0)
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion'):
        FashionMNISTDataset(data_root=str(tmp_path), split='test')


def test_read_idx_plain_and_gzip(tmp_path):
    header = (0x0803).to_bytes(4, 'big') + b''.join(
        n.to_bytes(4, 'big') for n in (2, 3, 4)
    )
    payload = np.arange(24, dtype=np.uint8)
    (tmp_path / 'x-idx3-ubyte').write_bytes(header + payload.tobytes())
    with gzip.open(tmp_path / 'y-idx3-ubyte.gz', 'wb') as f:
        f.write(header + payload.tobytes())
    for name in ('x-idx3-ubyte', 'y-idx3-ubyte'):
        arr = read_idx(str(tmp_path / name))
        assert arr.shape == (2, 3, 4) and arr.ravel().tolist() == list(range(24))
    (tmp_path / 'bad').write_bytes((0x0D03).to_bytes(4, 'big') + header[4:])
    with pytest.raises(ValueError, match='not a uint8 IDX'):
        read_idx(str(tmp_path / 'bad'))


def test_stratified_indices_prefix_balance():
    labels = np.repeat(np.arange(3), [5, 10, 20])
    idx = stratified_indices(labels, 9, seed=0)
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3]
    assert len(set(idx.tolist())) == 9


def test_sklearn_digits_splits():
    train, test = SklearnDigitsDataset('train'), SklearnDigitsDataset('test')
    assert len(train) + len(test) == 1797
    img = train.get_data_info(0)['img']
    assert img.shape == (8, 8) and img.dtype == np.uint8 and img.max() > 100


def test_foolbox_imagenet_samples_are_labelled_images():
    ds = FoolboxSamplesDataset(
        'imagenet', pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    )
    assert len(ds) == 20
    labels = ds.get_gt_labels()
    assert ((0 <= labels) & (labels < 1000)).all() and len(set(labels)) > 10
    assert ds[0]['inputs'].shape[0] == 3
    with pytest.raises(ValueError, match="dataset='svhn'"):
        FoolboxSamplesDataset('svhn')


def test_root_from_argument_environment_or_default(monkeypatch, tmp_path):
    from mmcompress.datasets.fashion_mnist_io import (
        DEFAULT_ROOT,
        ROOT_ENV,
        fashion_mnist_root,
    )

    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    assert fashion_mnist_root() == str(tmp_path)
    assert fashion_mnist_root('/given') == '/given'
    monkeypatch.setenv(ROOT_ENV, '')  # set but empty: as if unset
    assert fashion_mnist_root() == DEFAULT_ROOT
    assert FashionMNISTDataset(split='test', subset_size=10).data_root == DEFAULT_ROOT
    monkeypatch.delenv(ROOT_ENV)
    assert fashion_mnist_root() == DEFAULT_ROOT
