"""The build-time dry forward takes its input layout from the student
(mmcompress.distill.dry_run) or from ``input_shape`` of any rank."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier  # noqa: E402

from mmcompress.distill import DistillModel  # noqa: E402
from mmcompress.distill.dry_run import (
    default_input_shape,  # noqa: E402
    dry_run_batch,
)


class ToySequenceClassifier(BaseModel):
    """Conv1d classifier of (N, C, L) sequences (e.g. audio features)."""

    def __init__(self, in_channels=2, width=8, num_classes=3, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.conv = nn.Conv1d(in_channels, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.conv(inputs).relu()
        logits = self.fc(feats.mean(-1))
        if mode == 'loss':
            labels = torch.cat([s.gt_label for s in data_samples])
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


def test_image_layout_from_the_preprocessor_and_first_conv():
    # channels of the first Conv2d, image size 224, image meta in samples
    model = ToyClassifier(
        in_channels=3,
        data_preprocessor=dict(
            type='ImgDataPreprocessor', mean=[0.0] * 3, std=[1.0] * 3
        ),
    )
    assert default_input_shape(model) == (
        (3, 224, 224),
        'the data preprocessor (ImgDataPreprocessor)',
    )
    inputs, samples, layout = dry_run_batch(model)
    assert inputs.shape == (2, 3, 224, 224)
    assert samples[0].batch_input_shape == (224, 224)
    assert 'per-sample shape (3, 224, 224)' in layout
    # no preprocessor normalisation: the first conv gives rank and channels
    assert default_input_shape(ToyClassifier(in_channels=5)) == (
        (5, 224, 224),
        'the first convolution (Conv2d)',
    )
    # a single mean value broadcasts over the channels: the conv decides
    model = ToyClassifier(
        in_channels=3,
        data_preprocessor=dict(type='ImgDataPreprocessor', mean=[127.5], std=[127.5]),
    )
    assert default_input_shape(model)[0] == (3, 224, 224)


def test_sequence_layout_from_the_first_conv1d():
    model = ToySequenceClassifier(in_channels=2)
    assert default_input_shape(model) == ((2, 224), 'the first convolution (Conv1d)')
    inputs, samples, _ = dry_run_batch(model)
    assert inputs.shape == (2, 2, 224)
    assert 'img_shape' not in samples[0]  # no image meta for sequences
    # a conv-free model without preprocessor normalisation: images
    assert default_input_shape(nn.Linear(3, 4))[0] == (3, 224, 224)


def test_distill_model_on_sequences_with_input_shape():
    """A (C, L) input_shape builds and trains (it was refused as not
    (C, H, W))."""
    torch.manual_seed(0)
    model = DistillModel(
        student=dict(type=ToySequenceClassifier),
        teacher=dict(config=dict(type=ToySequenceClassifier), checkpoint=None),
        distill=dict(
            kd=dict(
                student='fc', teacher='fc', loss=dict(type='VanillaKDLoss', tau=2.0)
            ),
            hint=dict(student='conv', teacher='conv', loss=dict(type='FeatureMSELoss')),
        ),
        input_shape=(2, 40),
    )
    assert len(model.adapters) == 0
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(4, 2, 40, generator=g)
    from mmengine.structures import BaseDataElement

    samples = [BaseDataElement(gt_label=torch.tensor([i % 3])) for i in range(4)]
    losses = model(inputs, samples, mode='loss')
    teacher = model.teachers['teacher']
    with torch.no_grad():
        logits_T = teacher(inputs)
        feats_T = teacher.conv(inputs)
    logits_S = model.student(inputs)
    expected_kd = (
        F.kl_div(
            F.log_softmax(logits_S / 2, 1),
            F.softmax(logits_T / 2, 1),
            reduction='batchmean',
        )
        * 4
    )
    torch.testing.assert_close(losses['loss_distill_kd'], expected_kd)
    torch.testing.assert_close(
        losses['loss_distill_hint'], F.mse_loss(model.student.conv(inputs), feats_T)
    )
