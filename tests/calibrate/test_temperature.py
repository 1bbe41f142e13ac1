"""Temperature fitting, the test-time hook and the diagram publishing."""

import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.structures import BaseDataElement
from mmengine.visualization import Visualizer

from mmcompress.calibrate import (
    TemperatureScalingHook,
    bin_statistics,
    collect_logits,
    equal_width_edges,
    find_logits_module,
    fit_temperature,
    publish_reliability_diagram,
)


def synthetic_logits(true_temperature, num_samples=20000, seed=0):
    """Labels drawn from softmax(z); the model reports z * T (so the fitted
    temperature should be T)."""
    generator = torch.Generator().manual_seed(seed)
    calibrated = 2 * torch.randn(num_samples, 5, generator=generator)
    labels = torch.multinomial(
        calibrated.softmax(dim=1), 1, generator=generator
    ).squeeze(1)
    return calibrated * true_temperature, labels


@pytest.mark.parametrize('true_temperature', [0.6, 2.5])
def test_fit_temperature_recovers_known_temperature(true_temperature):
    logits, labels = synthetic_logits(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)


def test_fit_temperature_bad_inputs():
    with pytest.raises(ValueError, match='NaN or inf'):
        fit_temperature(torch.tensor([[float('nan'), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match='N >= 1'):
        fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match='labels must have shape'):
        fit_temperature(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_hook_scales_only_during_evaluation():
    model = TinyClassifier()
    runner = SimpleNamespace(model=model)
    x = torch.randn(4, 3)
    plain = model(x)
    hook = TemperatureScalingHook(temperature=2.0)
    hook.before_val_epoch(runner)
    assert torch.allclose(model(x), plain / 2)
    hook.after_val_epoch(runner)
    assert torch.allclose(model(x), plain)
    val_only = TemperatureScalingHook(temperature=2.0, phases=('val',))
    val_only.before_test_epoch(runner)
    assert torch.allclose(model(x), plain)


def test_hook_bad_configuration():
    with pytest.raises(ValueError, match='temperature must be > 0'):
        TemperatureScalingHook(temperature=0)
    with pytest.raises(ValueError, match='phases'):
        TemperatureScalingHook(temperature=1.0, phases=('train',))
    hook = TemperatureScalingHook(temperature=1.5, module='decode_head')
    with pytest.raises(ValueError, match="no sub-module 'decode_head'.*head"):
        hook.before_test_epoch(SimpleNamespace(model=TinyClassifier()))


def test_diagram_goes_to_visualizer_backends_and_out_dir(tmp_path):
    probs = torch.rand(50)
    stats = bin_statistics(probs, probs > 0.5, equal_width_edges(15))
    visualizer = Visualizer.get_instance(
        'calibration_test_visualizer',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path / 'run'),
    )
    written = publish_reliability_diagram(
        stats,
        0.1,
        'val_reliability',
        7,
        visualizer=visualizer,
        out_dir=str(tmp_path / 'extra'),
    )
    assert osp.basename(written) == 'val_reliability_7.png'
    assert osp.isfile(written)
    image_dir = tmp_path / 'run' / 'vis_data' / 'vis_image'
    assert [p.name for p in image_dir.glob('*.png')] == [osp.basename(written)]


def test_fit_keeps_an_in_range_optimum_and_lowers_the_nll():
    logits, labels = synthetic_logits(2.5, num_samples=2000)
    fitted = fit_temperature(logits, labels)
    nll = [F.cross_entropy(logits.double() / t, labels) for t in (1.0, fitted)]
    assert nll[1] < nll[0]
    # the optimum: the NLL rises on both sides
    for t in (0.98 * fitted, 1.02 * fitted):
        assert F.cross_entropy(logits.double() / t, labels) > nll[1]


def test_fit_clamps_to_the_bounds():
    logits, labels = synthetic_logits(2.5, num_samples=2000)
    with pytest.warns(
        UserWarning,
        match=r'2000 samples, \d+ classified '
        r'correctly\) is lowest at T = 2\.\d+, outside the bounds '
        r'\(0\.5, 2\.0\); T is clamped to 2\.0',
    ):
        assert fit_temperature(logits, labels, bounds=(0.5, 2.0)) == 2.0
    logits, labels = synthetic_logits(0.6, num_samples=2000)
    with pytest.warns(UserWarning, match='clamped to 0.8'):
        assert fit_temperature(logits, labels, bounds=(0.8, 2.0)) == 0.8
    with pytest.raises(ValueError, match='0 < low <= 1 <= high'):
        fit_temperature(logits, labels, bounds=(2.0, 3.0))


class HeadModel(nn.Module):
    """A classifier whose ``test_step`` returns mmpretrain-like samples."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.neck = nn.Identity()
        self.head = nn.Linear(4, num_classes)

    def test_step(self, data):
        inputs, labels = data
        scores = self.head(self.neck(inputs)).softmax(dim=1)
        return [
            BaseDataElement(gt_label=torch.tensor([int(y)]), pred_score=p)
            for p, y in zip(scores, labels)
        ]


class DistillLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.student = HeadModel()
        self.teacher_adapter = nn.Linear(2, 2)

    def test_step(self, data):
        return self.student.test_step(data)


def test_find_logits_module_looks_into_the_student():
    model = DistillLike()
    path, module = find_logits_module(model, 'head')
    assert path == 'student.head' and module is model.student.head
    assert find_logits_module(model, 'student.head')[0] == 'student.head'
    assert find_logits_module(HeadModel(), 'head')[0] == 'head'


def test_collect_logits_of_a_distill_model_student():
    model = DistillLike()
    batches = [(torch.randn(5, 4), torch.arange(5) % 3) for _ in range(2)]
    logits, labels = collect_logits(model, batches, 'head')
    assert logits.shape == (10, 3)
    assert labels.tolist() == (torch.arange(5) % 3).tolist() * 2
    inputs = torch.cat([b[0] for b in batches])
    assert torch.allclose(logits, model.student.head(inputs), atol=1e-6)
