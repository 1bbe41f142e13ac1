"""Transferability weights and the self-training losses against hand values."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmcompress.adapt import (
    TransferabilityWeights,
    consistency_kl,
    consistency_ramp,
    distill_kl,
    pixel_weighted_ce,
    symmetric_ce,
    transfer_weight,
)


def weights_with_prototypes(momentum=0.99):
    module = TransferabilityWeights(momentum=momentum)
    module.prototypes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    return module


def test_weight_is_one_half_at_the_mean_distance():
    module = weights_with_prototypes()
    # minimum distances 1, 2, 3 -> mean 2
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0], [10.0, 3.0]])
    w = module(feats)
    assert float(module.mean_distance) == pytest.approx(2.0)
    assert float(w[1]) == pytest.approx(0.5)
    assert float(w[0]) == pytest.approx(math.exp(-math.log(2) / 4))
    assert float(w[2]) == pytest.approx(2 ** (-9 / 4))
    assert float(transfer_weight(torch.tensor(4.0), torch.tensor(2.0))) == 0.5


def test_mean_distance_is_an_ema_started_at_the_first_batch():
    module = weights_with_prototypes(momentum=0.99)
    module(torch.tensor([[2.0, 0.0]]))
    module(torch.tensor([[0.0, 6.0]]))
    assert float(module.mean_distance) == pytest.approx(0.99 * 2 + 0.01 * 6)


def test_class_offsets_are_added_then_clipped():
    module = TransferabilityWeights(class_offsets=[0.0, 0.25, 0.9])
    module.prototypes = torch.zeros(1, 2)
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    w = module(feats, torch.tensor([0, 1, 2, 255]))
    assert w.tolist() == pytest.approx([0.5, 0.75, 1.0, 0.5])


def test_no_prototypes_means_unit_weights():
    assert TransferabilityWeights()(torch.randn(3, 4)).tolist() == [1.0, 1.0, 1.0]


def test_pixel_weighted_ce_divides_by_labelled_pixels():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [2, 255]]])
    w = torch.tensor([[[0.5, 1.0], [0.0, 1.0]]])
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction='none')
    expected = (ce * w).sum() / 3
    torch.testing.assert_close(pixel_weighted_ce(logits, target, w), expected)


def test_symmetric_ce_by_hand():
    logits = torch.tensor([[[[2.0]], [[0.0]], [[-1.0]]]])
    target = torch.tensor([[[0]]])
    p = torch.softmax(logits[0, :, 0, 0], 0)
    ce = -math.log(p[0])
    rce = -(float(p[1]) + float(p[2])) * math.log(1e-4)
    got = symmetric_ce(logits, target, alpha=0.1, beta=1.0)
    assert float(got) == pytest.approx(0.1 * ce + rce, rel=1e-5)
    all_ignored = torch.full((1, 1, 1), 255)
    assert float(symmetric_ce(logits, all_ignored)) == 0.0


def test_consistency_ramp_is_the_official_sigmoid_shape():
    assert consistency_ramp(0) == pytest.approx(math.exp(-5))
    assert consistency_ramp(2000) == pytest.approx(math.exp(-1.25))
    assert consistency_ramp(4000) == 1.0 and consistency_ramp(9000) == 1.0
    assert consistency_ramp(5, rampup=0) == 1.0


def test_consistency_kl_is_torch_mean_over_kept_pixels_and_classes():
    s, t = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    keep = torch.rand(2, 3, 3) > 0.4
    log_s = F.log_softmax(s, 1).permute(0, 2, 3, 1)[keep]
    p_t = F.softmax(t, 1).permute(0, 2, 3, 1)[keep]
    expected = torch.nn.KLDivLoss()(log_s, p_t)
    torch.testing.assert_close(consistency_kl(s, t, keep), expected)


def test_distill_kl_fixed_and_official_bug():
    s, t = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    p_s, p_t = F.softmax(s, 1), F.softmax(t, 1)
    fixed = (p_t * (p_t.log() - p_s.log())).mean()
    bug = (p_t * (p_t.log() - p_s)).mean()
    torch.testing.assert_close(distill_kl(s, t), fixed)
    torch.testing.assert_close(distill_kl(s, t, official_bug=True), bug)
