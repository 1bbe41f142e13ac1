"""Bad input to post-training quantization (calibration, reconstruction)."""

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import QuantConfig, quantize_
from mmcompress.quant.ptq import (
    MinMaxObserver,
    cache_batches,
    calibrate_ranges,
    model_batches,
    reconstruct,
)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)) + x)


class TinyNet(nn.Module):
    """An OpenMMLab-style model: ``forward(inputs, data_samples, mode)`` and a
    ``data_preprocessor`` (here the identity on a dict)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = Block()
        self.head = nn.Linear(4, 3)

    def data_preprocessor(self, batch, training=False):
        return batch

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.block(torch.relu(self.stem(inputs)))
        return self.head(x.mean((2, 3)))


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.conv(x), x


class PairNet(TinyNet):
    """A unit (``pair``) returning a tuple."""

    def __init__(self):
        nn.Module.__init__(self)
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.pair = Pair()
        self.block = Block()
        self.head = nn.Linear(4, 3)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.block(self.pair(torch.relu(self.stem(inputs)))[0])
        return self.head(x.mean((2, 3)))


class AuxNet(TinyNet):
    """A quantized layer the tensor-mode forward never runs (a training-only
    auxiliary branch)."""

    def __init__(self):
        nn.Module.__init__(self)
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = Block()
        self.aux = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 3)


def _quantized(w=None, a=None, net=TinyNet):
    torch.manual_seed(0)
    model = net()
    quantize_(
        model,
        QuantConfig(
            w=w or dict(type='LSQQuantizer', bits=4, signed=True, per_channel=True),
            a=a or dict(type='LSQQuantizer', bits=4),
            keep_first_float=False,
        ),
    )
    return model.eval()


def _batches(n=2):
    return [dict(inputs=torch.randn(4, 1, 6, 6)) for _ in range(n)]


def test_zero_calibration_images():
    """PTQ asked to calibrate on 0 images (num_images=0).

    Message: the number of calibration images must be an int >= 1, got 0
    """
    with pytest.raises(
        ValueError, match='calibration images must be an int >= 1, got 0'
    ):
        list(model_batches(_quantized(), _batches(), 0))


def test_calibration_dataloader_yields_no_images():
    """The calibration dataloader is empty (an empty dataset or subset).

    Message: the calibration dataloader yielded no images
    """
    with pytest.raises(
        ValueError, match='the calibration dataloader yielded no images'
    ):
        cache_batches(_quantized(), [], 16, progress=False)


def test_calibrate_with_no_batches():
    """calibrate_ranges called with an empty list of batches.

    Message: calibration needs at least one batch; got 0
    """
    with pytest.raises(ValueError, match='calibration needs at least one batch; got 0'):
        calibrate_ranges(_quantized(), [], progress=False)


def test_reconstruction_unit_matches_nothing():
    """A reconstruction unit name that matches no module of the model.

    Message: ptq units pattern 'block2' matches no module. Close names: ['block'
    """
    model = _quantized()
    calibrate_ranges(model, _batches(), progress=False)
    with pytest.raises(
        ValueError, match=r"ptq units pattern 'block2' matches no module"
    ):
        reconstruct(model, _batches(), units=['block2'], iters=2, progress=False)


def test_reconstruction_unit_without_quantized_layer():
    """A reconstruction unit that holds no weight-quantized layer (e.g. a BN).

    Message: none of which holds a quantized layer with a weight quantizer
    """
    model = _quantized()
    calibrate_ranges(model, _batches(), progress=False)
    with pytest.raises(ValueError, match='none of which holds a quantized layer'):
        reconstruct(model, _batches(), units=['block.bn'], iters=2, progress=False)


def test_ptq_bits_out_of_range():
    """A PTQ config with 9-bit weights (the quantizers support 2..8).

    Message: LSQQuantizer: bits=9 is not supported; valid bit-widths are 2..8
    """
    with pytest.raises(
        ValueError, match='bits=9 is not supported; valid bit-widths are 2..8'
    ):
        _quantized(w=dict(type='LSQQuantizer', bits=9, signed=True))


def test_nan_activations_during_calibration():
    """The float model produces NaN on the calibration data (a broken checkpoint).

    Message: observed a tensor holding NaN or inf
    """
    model = _quantized()
    with torch.no_grad():
        model.stem.weight[0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='observed a tensor holding NaN or inf'):
        calibrate_ranges(model, _batches(), progress=False)


def test_ptq_with_a_learned_nonuniform_quantizer():
    """PTQ on a config whose quantizers calibration cannot set (e.g. EWGS).

    Message: post-training calibration sets LSQQuantizer steps
    """
    model = _quantized(w=dict(type='EWGSQuantizer', bits=4, role='weight'))
    with pytest.raises(
        TypeError, match='post-training calibration sets LSQQuantizer steps'
    ):
        calibrate_ranges(model, _batches(), progress=False)


def test_group_observer_on_a_per_tensor_quantizer():
    """A per-channel / group-wise observer for a per-tensor quantizer.

    Message: needs a per_channel=True quantizer
    """
    model = _quantized(w=dict(type='LSQQuantizer', bits=4, signed=True))
    observer = dict(type='MinMaxObserver', granularity='group', num_groups=2)
    with pytest.raises(ValueError, match='needs a per_channel=True quantizer'):
        calibrate_ranges(model, _batches(), weight_observer=observer, progress=False)


def test_reconstruction_unit_returning_a_tuple():
    """A reconstruction unit whose forward returns a tuple (e.g. a whole neck).

    Message: reconstruction units must return one tensor
    """

    model = _quantized(net=PairNet)
    calibrate_ranges(model, _batches(), progress=False)
    with pytest.raises(TypeError, match='reconstruction units must return one tensor'):
        reconstruct(model, _batches(), units=['pair'], iters=2, progress=False)


def test_quantized_layer_not_on_the_tensor_path():
    """A quantized layer the model's tensor-mode forward never runs (an auxiliary head).

    Message: aux.act_quantizer saw no tensor in 2 calibration batches
    """
    model = _quantized(net=AuxNet)
    with pytest.raises(RuntimeError, match='aux.act_quantizer saw no tensor in 2'):
        calibrate_ranges(model, _batches(), progress=False)


def test_reconstruction_iterations_zero():
    """Reconstruction configured with iters=0.

    Message: ptq iters must be an int >= 1, got 0
    """
    model = _quantized()
    calibrate_ranges(model, _batches(), progress=False)
    with pytest.raises(ValueError, match='ptq iters must be an int >= 1, got 0'):
        reconstruct(model, _batches(), units='layers', iters=0, progress=False)


def test_observer_momentum_out_of_range():
    """An EMA observer with momentum=0 (the average would never move).

    Message: EMAMinMaxObserver: momentum must be in (0, 1] (a finite number), got 0
    """
    from mmcompress.quant.ptq import EMAMinMaxObserver

    assert isinstance(MinMaxObserver(), MinMaxObserver)
    with pytest.raises(ValueError, match=r'momentum must be in \(0, 1\]'):
        EMAMinMaxObserver(momentum=0)


class _Labelled(torch.utils.data.Dataset):
    """Six images: classes 0, 0, 0, 1, 1, 2."""

    labels = [0, 0, 0, 1, 1, 2]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return idx

    def get_cat_ids(self, idx):
        return [self.labels[idx]]


def test_more_images_per_class_than_a_class_holds():
    """Limited-data PTQ asks for 2 images per class; one class has only 1.

    Message: images_per_class=2: classes {2: 1} (class: images) have fewer images
    """
    from mmcompress.quant.ptq import images_per_class

    with pytest.raises(ValueError, match=r'classes \{2: 1\} \(class: images\)'):
        images_per_class(_Labelled(), 2)


def test_images_per_class_on_a_dataset_without_labels():
    """images_per_class on a segmentation dataset (no per-image class list).

    Message: images_per_class needs a dataset with get_cat_ids (mmpretrain, mmdet)
    """
    from mmcompress.quant.ptq import images_per_class

    with pytest.raises(TypeError, match='needs a dataset with get_cat_ids'):
        images_per_class(torch.utils.data.TensorDataset(torch.zeros(4)), 1)


def test_kl_distillation_on_a_detector_output():
    """Stage-2 KD with loss='kl' on a model whose tensor mode returns feature maps.

    Message: kd loss 'kl' needs (N, C) logits from the model's tensor mode
    """
    from mmcompress.quant.ptq import kd_loss

    maps = (torch.zeros(2, 4, 8, 8),)
    with pytest.raises(TypeError, match="use loss='mse' for detectors"):
        kd_loss(maps, maps, 'kl')


def test_kd_train_weights_given_as_a_string():
    """Stage-2 KD with train_weights='false' (a string) instead of False.

    Message: kd train_weights must be a bool, got 'false'
    """
    from mmcompress.quant.ptq import distill

    model = _quantized()
    with pytest.raises(TypeError, match="train_weights must be a bool, got 'false'"):
        distill(model, _quantized(), _batches(), iters=1, train_weights='false')
