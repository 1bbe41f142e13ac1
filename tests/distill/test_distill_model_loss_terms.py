"""DistillModel passes the models to losses that ask for them and logs the
terms of dict-valued losses separately (used by DenseHeadDistillLoss)."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from toy_models import ToyClassifier, toy_batch  # noqa: E402

from mmcompress.distill import DistillModel  # noqa: E402


class ToyTermsLoss(nn.Module):
    """Returns two terms computed from the logits and the models given."""

    seen = {}

    def forward(self, preds_S, preds_T, student_model, teacher_model):
        type(self).seen.update(student=student_model, teacher=teacher_model)
        return dict(
            mse=(preds_S - preds_T).pow(2).mean(), l1=(preds_S - preds_T).abs().mean()
        )


def _model(name='terms'):
    torch.manual_seed(0)
    return DistillModel(
        student=dict(type=ToyClassifier),
        teacher=dict(config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=None),
        distill={
            name: dict(
                student='head.fc', teacher='head.fc', loss=dict(type=ToyTermsLoss)
            )
        },
        input_shape=(1, 8, 8),
    )


def test_models_passed_and_terms_logged_by_name():
    model = _model()
    model.train()
    inputs, samples = toy_batch(seed=0)
    losses = model.loss(inputs, samples)
    assert ToyTermsLoss.seen['student'] is model.student
    assert ToyTermsLoss.seen['teacher'] is model.teachers['teacher']
    logits_S = model.student(inputs, samples, mode='tensor')
    with torch.no_grad():
        logits_T = model.teachers['teacher'](inputs, samples, mode='tensor')
    assert losses['loss_distill_terms_mse'].item() == pytest.approx(
        (logits_S - logits_T).pow(2).mean().item(), rel=1e-5
    )
    assert losses['loss_distill_terms_l1'].item() == pytest.approx(
        (logits_S - logits_T).abs().mean().item(), rel=1e-5
    )
    assert 'loss_distill_terms' not in losses


def test_a_term_clashing_with_another_loss_raises():
    # entry 'kd' term 'l1' -> 'loss_distill_kd_l1'; the toy student logs
    # 'loss_student' only, so force a clash with a second entry's key
    model = DistillModel(
        student=dict(type=ToyClassifier),
        teacher=dict(config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=None),
        distill=dict(
            kd=dict(student='head.fc', teacher='head.fc', loss=dict(type=ToyTermsLoss)),
            kd_l1=dict(
                student='head.fc', teacher='head.fc', loss=dict(type='VanillaKDLoss')
            ),
        ),
        input_shape=(1, 8, 8),
    )
    model.train()
    inputs, samples = toy_batch(seed=0)
    with pytest.raises(KeyError, match='loss_distill_kd_l1'):
        model.loss(inputs, samples)
