"""Calibration and unit-wise reconstruction on real Fashion-MNIST images."""

import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.structures import DataSample

from mmcompress.quant import QuantConfig, quantize_
from mmcompress.quant.ptq import (
    calibrate_ranges,
    distill,
    kd_loss,
    layer_sqnr,
    quantizers_off,
    reconstruct,
    sqnr_db,
)
from mmcompress.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'quant', 'mmpretrain', 'ptq_w4a4_fmnist.py')


def _fashion_mnist(size):
    from mmcompress.datasets.fashion_mnist import FashionMNISTDataset

    dataset = FashionMNISTDataset(split='train', subset_size=size)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    images = torch.tensor(np.stack([info['img'] for info in infos])).float()
    images = ((images - 72.94) / 90.02).unsqueeze(1)
    labels = torch.tensor([info['gt_label'] for info in infos])
    return images, labels


def _batches(images, labels, size):
    return [
        dict(
            inputs=images[i : i + size],
            data_samples=[
                DataSample().set_gt_label(int(y)) for y in labels[i : i + size]
            ],
        )
        for i in range(0, len(images), size)
    ]


@pytest.fixture(scope='module')
def float_student():
    """The Fashion-MNIST student, 80 Adam steps on 1,000 real images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images, labels = _fashion_mnist(1500)
    model = MODELS.build(Config.fromfile(CONFIG).model.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        idx = torch.randint(1000, (64,))
        loss = F.cross_entropy(model(images[idx], mode='tensor'), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    torch.set_num_threads(threads)
    return model, images, labels


def _quantized(model, bits, act_bits=None):
    model = copy.deepcopy(model)
    quantize_(
        model,
        QuantConfig(
            w=dict(type='LSQQuantizer', bits=bits, signed=True, per_channel=True),
            a=dict(type='LSQQuantizer', bits=act_bits or bits),
        ),
    )
    return model.eval()


def _unit_output(model, unit, images):
    out = []
    handle = dict(model.named_modules())[unit].register_forward_hook(
        lambda m, a, o: out.append(o.detach())
    )
    with torch.no_grad():
        model(images, mode='tensor')
    handle.remove()
    return out[0]


def test_calibrated_model_is_an_ordinary_quantized_state(float_student, deterministic):
    model, images, labels = float_student
    quant = _quantized(model, 8)
    calibrate_ranges(
        quant,
        _batches(images[:256], labels[:256], 64),
        dict(type='MSEObserver'),
        progress=False,
    )
    fresh = _quantized(model, 8)
    assert quant.state_dict().keys() == fresh.state_dict().keys()
    assert all(
        q.initialized.item()
        for n, q in quant.named_modules()
        if n.endswith('_quantizer')
    )
    # post-ReLU block inputs are unsigned, the stem BN output feeding nothing
    # quantized stays out; W8A8 agrees with the float model on held-out images
    with torch.no_grad():
        fp = model(images[1000:1500], mode='tensor').argmax(1)
        q8 = quant(images[1000:1500], mode='tensor').argmax(1)
    assert (fp == q8).float().mean() > 0.97


@pytest.mark.parametrize('loss', ['mse', 'fisher'])
def test_unit_reconstruction_lowers_the_unit_output_mse_on_held_out_images(
    float_student, deterministic, loss
):
    """BasicBlock backbone.layer1.0 at W3A8 (the rounding error dominates):
    reconstructed on 256 images, its output error against the float block is
    measured on 500 other images."""
    model, images, labels = float_student
    quant = _quantized(model, 3, act_bits=8)
    calib = _batches(images[:256], labels[:256], 64)
    calibrate_ranges(quant, calib, dict(type='MSEObserver'), progress=False)
    unit = 'backbone.layer1.0'
    held = images[1000:1500]
    target = _unit_output(model, unit, held)
    before = F.mse_loss(_unit_output(quant, unit, held), target).item()
    stats = reconstruct(
        quant, calib, units=[unit], iters=200, batch_size=32, loss=loss, progress=False
    )
    after = F.mse_loss(_unit_output(quant, unit, held), target).item()
    assert stats[unit]['rec_after'] < stats[unit]['rec_before']
    print(before, after)
    assert after < 0.8 * before
    # the rounded weights lie on the calibrated grid: the quantizer keeps them
    conv = dict(quant.named_modules())[unit + '.conv1']
    assert torch.allclose(conv.weight_quantizer(conv.weight), conv.weight, atol=1e-6)
    # layers outside the unit keep nearest rounding of the float weights
    other = dict(quant.named_modules())['backbone.layer2.0.conv1']
    assert torch.equal(
        other.weight, dict(model.named_modules())['backbone.layer2.0.conv1'].weight
    )


def test_layerwise_units_and_resume_skip_done_units(float_student, deterministic):
    model, images, labels = float_student
    quant = _quantized(model, 4)
    calib = _batches(images[:128], labels[:128], 64)
    calibrate_ranges(quant, calib, progress=False)
    seen = []
    reconstruct(
        quant,
        calib,
        units='layers',
        iters=5,
        progress=False,
        done=['backbone.layer1.0.conv1'],
        on_unit_done=lambda name, stats: seen.append(name),
    )
    assert len(seen) == 13 and 'backbone.layer1.0.conv1' not in seen
    assert seen[0] == 'backbone.layer1.0.conv2'


def test_quantizers_off_is_the_float_model(float_student):
    model, images, _ = float_student
    quant = _quantized(model, 4)
    calibrate_ranges(quant, _batches(images[:64], _[:64], 64), progress=False)
    with torch.no_grad(), quantizers_off(quant):
        assert torch.equal(
            quant(images[:32], mode='tensor'), model(images[:32], mode='tensor')
        )


class Branchy(torch.nn.Module):
    """Wraps a block with data-dependent Python control flow (FX cannot trace it)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if float(x.mean()) > -1e9:
            return self.inner(x)
        return x


def test_untraceable_unit_is_reconstructed(float_student, deterministic):
    model, images, labels = float_student
    model = copy.deepcopy(model)
    model.backbone.layer1[0] = Branchy(model.backbone.layer1[0])
    quant = _quantized(model, 3, act_bits=8)
    calib = _batches(images[:256], labels[:256], 64)
    calibrate_ranges(quant, calib, dict(type='MSEObserver'), progress=False)
    stats = reconstruct(
        quant, calib, units=['backbone.layer1.0'], iters=200, progress=False
    )
    assert (
        stats['backbone.layer1.0']['rec_after']
        < stats['backbone.layer1.0']['rec_before']
    )


def test_layer_sqnr_of_the_calibrated_model(float_student):
    model, images, labels = float_student
    # 10 log10(|y|^2 / |0.1 y|^2) = 20 dB
    assert sqnr_db(torch.ones(8), torch.full((8,), 1.1)) == pytest.approx(20.0)
    quant = _quantized(model, 4)
    batches = _batches(images[:64], labels[:64], 64)
    calibrate_ranges(quant, batches, progress=False)
    sqnr = layer_sqnr(quant, batches)
    assert len(sqnr) == 14
    # the first quantized layer sees the float input in both cases
    first = sqnr['backbone.layer1.0.conv1']
    assert first[0] == pytest.approx(first[1])
    # 4-bit layers alone: between 10 and 30 dB; errors add up along the model
    assert all(10 < own < 30 for own, _ in sqnr.values())
    assert sqnr['backbone.layer3.1.conv2'][1] < sqnr['backbone.layer3.1.conv2'][0]


def test_stage2_kd_fits_the_float_model_on_held_out_images(
    float_student, deterministic
):
    """W3A3 student calibrated on 100 images (10 per class): joint KD on those
    100 images lowers the KL to the float model on 300 other images and raises
    the top-1 agreement with it; the teacher is unchanged and the result is an
    ordinary QuantizedModel state."""
    model, images, labels = float_student
    idx = torch.cat([torch.nonzero(labels[:1000] == c)[:10, 0] for c in range(10)])
    calib = _batches(images[idx], labels[idx], 50)
    quant = _quantized(model, 3)
    calibrate_ranges(quant, calib, dict(type='MSEObserver'), progress=False)
    fresh_keys = quant.state_dict().keys()
    teacher = copy.deepcopy(model)
    teacher_state = copy.deepcopy(teacher.state_dict())
    held = images[1000:1300]

    def held_out():
        with torch.no_grad(), quantizers_off(teacher):
            t = teacher(held, mode='tensor')
        with torch.no_grad():
            s = quant(held, mode='tensor')
        kl = kd_loss(s, t, 'kl').item()
        return kl, (s.argmax(1) == t.argmax(1)).float().mean().item()

    kl_before, agree_before = held_out()
    stats = distill(quant, teacher, calib, iters=50, lr=1e-3, progress=False)
    kl_after, agree_after = held_out()
    assert stats['kd_after'] < 0.3 * stats['kd_before']
    assert kl_after < 0.3 * kl_before
    assert agree_after > agree_before + 0.2
    assert quant.state_dict().keys() == fresh_keys
    assert all(
        torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items()
    )


def test_stage2_kd_without_weights_keeps_the_quantized_weights(
    float_student, deterministic
):
    """kd train_weights=False: the weights behind the weight quantizers keep
    their values (and so stage 1's rounding); the LSQ steps, BN affine
    parameters and the float stem / fc are trained and the KL falls; with
    True (the default) the quantized weights move too."""
    model, images, labels = float_student
    idx = torch.cat([torch.nonzero(labels[:1000] == c)[:10, 0] for c in range(10)])
    calib = _batches(images[idx], labels[idx], 50)
    quant = _quantized(model, 3)
    calibrate_ranges(quant, calib, dict(type='MSEObserver'), progress=False)
    start = copy.deepcopy(quant.state_dict())
    layers = [f'{n}.weight' for n, m in quant.named_modules() if hasattr(m, 'weight')]
    quantized = [
        k for k in layers if k.rsplit('.', 1)[0] + '.weight_quantizer.step' in start
    ]
    assert len(quantized) == 14
    others = ['backbone.conv1.weight', 'head.fc.weight', 'backbone.bn1.weight']
    steps = [k for k in start if k.endswith('_quantizer.step')]

    def changed(state, keys):
        return [k for k in keys if not torch.equal(state[k], start[k])]

    teacher = copy.deepcopy(model)
    kept = copy.deepcopy(quant)
    stats = distill(
        kept, teacher, calib, iters=20, lr=1e-3, train_weights=False, progress=False
    )
    state = kept.state_dict()
    assert changed(state, quantized) == []
    assert changed(state, others) == others
    assert len(changed(state, steps)) == len(steps)
    assert stats['kd_after'] < 0.7 * stats['kd_before']
    assert all(p.grad is None for p in kept.parameters())
    moved = copy.deepcopy(quant)
    distill(moved, teacher, calib, iters=20, lr=1e-3, progress=False)
    assert changed(moved.state_dict(), quantized) == quantized
