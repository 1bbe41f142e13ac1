"""RankMixup (MRL, M-NDCG) and baseline losses against hand computation."""

import math

import pytest
import torch
import torch.nn.functional as F

from mmcompress.calibrate import (
    MarginLogitSmoothLoss,
    MixupMarginRankingLoss,
    MixupNDCGLoss,
    SoftmaxFocalLoss,
    mix_inputs,
)


def logits_with_top(tops, num_classes=3):
    """Rows whose largest logit is ``tops[i]`` (others are ``tops[i] - 5``)."""
    rows = torch.tensor(tops, dtype=torch.float64)[:, None] - 5.0
    rows = rows.repeat(1, num_classes)
    rows[:, 0] += 5.0
    return rows


# raw tops [2, 1, 3], mixed tops [1.5, 2.5, 0]; margin 1 -> hinge
# relu([-0.5, 1.5, -3] + 1) = [0.5, 2.5, 0]; pair 1 mixes two samples of the
# same class (a target entry equal to 1) -> mask [1, 0, 1]
RAW = logits_with_top([2.0, 1.0, 3.0])
MIXED = logits_with_top([1.5, 2.5, 0.0])
TARGETS = torch.tensor(
    [[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.3, 0.0, 0.7]], dtype=torch.float64
)


def test_mrl_faithful_broadcast_quirk():
    loss = MixupMarginRankingLoss(margin=1.0, loss_weight=0.1)
    value = loss(RAW, MIXED, TARGETS)
    # the official (N,) * (N, 1) product: mean(mask) * mean(hinge)
    assert float(value) == pytest.approx(0.1 * (2 / 3) * (3.0 / 3), abs=1e-12)
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    hinge = torch.tensor([[0.5], [2.5], [0.0]], dtype=torch.float64)
    assert (mask * hinge).shape == (3, 3)
    assert float(value) == pytest.approx(0.1 * float((mask * hinge).mean()))


def test_mrl_per_pair_variant():
    loss = MixupMarginRankingLoss(margin=1.0, loss_weight=0.1, faithful_broadcast=False)
    assert float(loss(RAW, MIXED, TARGETS)) == pytest.approx(
        0.1 * (0.5 + 0.0 + 0.0) / 3, abs=1e-12
    )


def test_mrl_pairs_each_copy_with_its_raw_sample():
    # M = 2 copies of a batch of 2: rows 0, 1 are copy 0, rows 2, 3 copy 1
    raw = logits_with_top([1.0, 4.0])
    mixed = logits_with_top([2.0, 0.0, 0.5, 3.5])
    targets = torch.tensor([[0.7, 0.3, 0.0]] * 4, dtype=torch.float64)
    loss = MixupMarginRankingLoss(margin=1.0, loss_weight=1.0, faithful_broadcast=False)
    # hinges: relu(2-1+1)=2, relu(0-4+1)=0, relu(.5-1+1)=.5, relu(3.5-4+1)=.5
    assert float(loss(raw, mixed, targets)) == pytest.approx(3.0 / 4)


def test_mrl_gradient_flows_to_both_forwards():
    raw = RAW.clone().requires_grad_()
    mixed = MIXED.clone().requires_grad_()
    MixupMarginRankingLoss(margin=1.0)(raw, mixed, TARGETS).backward()
    assert raw.grad.abs().sum() > 0 and mixed.grad.abs().sum() > 0


def probability_logits(probs):
    return torch.tensor(probs, dtype=torch.float64).log()


def test_mndcg_hand_computation():
    # one raw sample with confidence .7; copy 1: conf .5, lam .6;
    # copy 2: conf .8, lam .2 (relevance max(.2, .8) = .8)
    raw = probability_logits([[0.7, 0.2, 0.1]])
    mixed = probability_logits([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]])
    targets = torch.tensor([[0.6, 0.4, 0.0], [0.2, 0.8, 0.0]], dtype=torch.float64)
    # order by relevance: raw (1), copy 2 (.8), copy 1 (.6)
    dcg = 0.7 / math.log2(2) + 0.8 / math.log2(3) + 0.5 / math.log2(4)
    idcg = 1.0 / math.log2(2) + 0.8 / math.log2(3) + 0.6 / math.log2(4)
    ndcg = min(dcg / idcg, idcg / dcg)
    value = MixupNDCGLoss(loss_weight=0.1)(raw, mixed, targets)
    assert float(value) == pytest.approx(0.1 * (1 - ndcg), abs=1e-12)


def test_mndcg_ratio_flips_when_dcg_exceeds_idcg_and_batch_mean():
    raw = probability_logits([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])
    mixed = probability_logits([[0.9, 0.05, 0.05], [0.5, 0.4, 0.1]])
    targets = torch.tensor([[0.55, 0.45, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    per_sample = []
    for conf, rel in (([0.9, 0.9], [1.0, 0.55]), ([0.6, 0.5], [1.0, 1.0])):
        dcg = sum(c / math.log2(j + 2) for j, c in enumerate(conf))
        idcg = sum(r / math.log2(j + 2) for j, r in enumerate(rel))
        per_sample.append(1 - min(dcg / idcg, idcg / dcg))
    # first sample: DCG > IDCG, so nDCG = IDCG / DCG
    assert per_sample[0] > 0
    value = MixupNDCGLoss(loss_weight=1.0)(raw, mixed, targets)
    assert float(value) == pytest.approx(sum(per_sample) / 2, abs=1e-12)


def test_rank_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match='M whole copies'):
        MixupNDCGLoss()(RAW, MIXED[:2], TARGETS[:2])
    with pytest.raises(ValueError, match='must match mixed logits'):
        MixupMarginRankingLoss()(RAW, MIXED, TARGETS[:, :2])


def test_mix_inputs_builds_convex_copies():
    torch.manual_seed(0)
    inputs = torch.arange(4, dtype=torch.float32).view(4, 1) * 10
    labels = torch.tensor([0, 1, 2, 1])
    mixed, targets, lams = mix_inputs(inputs, labels, 3, num_mixup=3, alpha=2.0)
    assert mixed.shape == (12, 1) and targets.shape == (12, 3)
    assert torch.allclose(targets.sum(dim=1), torch.ones(12))
    for m, lam in enumerate(lams.tolist()):
        for i in range(4):
            partner_value = (mixed[m * 4 + i] - lam * inputs[i]) / (1 - lam)
            j = int(torch.round(partner_value / 10))
            assert float(partner_value) == pytest.approx(10 * j, abs=1e-3)
            expected = lam * F.one_hot(labels[i], 3) + (1 - lam) * F.one_hot(
                labels[j], 3
            )
            assert torch.allclose(targets[m * 4 + i], expected.float())
    with pytest.raises(ValueError, match='num_mixup'):
        mix_inputs(inputs, labels, 3, num_mixup=0, alpha=1.0)


def test_softmax_focal_loss_hand_value_and_gamma_zero():
    logits = probability_logits([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    labels = torch.tensor([0, 2])
    expected = (-(0.3**3) * math.log(0.7) - (0.5**3) * math.log(0.5)) / 2
    assert float(SoftmaxFocalLoss(gamma=3.0)(logits, labels)) == pytest.approx(expected)
    assert float(SoftmaxFocalLoss(gamma=0.0)(logits, labels)) == pytest.approx(
        float(F.cross_entropy(logits, labels))
    )
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    expected_soft = (
        -0.5 * 0.3**3 * math.log(0.7)
        - 0.5 * 0.8**3 * math.log(0.2)
        - 0.5**3 * math.log(0.5)
    ) / 2
    assert float(SoftmaxFocalLoss()(logits, soft)) == pytest.approx(expected_soft)
    with pytest.raises(ValueError, match='gamma'):
        SoftmaxFocalLoss(gamma=-1)


def test_margin_logit_smooth_loss_hand_value():
    logits = torch.tensor([[5.0, 0.0, -3.0]], dtype=torch.float64)
    label = torch.tensor([1])
    # distances to the max: [0, 5, 8]; relu(d - 6) = [0, 0, 2], mean 2/3
    expected = float(F.cross_entropy(logits, label)) + 0.1 * 2 / 3
    loss = MarginLogitSmoothLoss(margin=6.0, alpha=0.1)
    assert float(loss(logits, label)) == pytest.approx(expected)
    assert float(loss(logits, label, avg_factor=2)) == pytest.approx(expected / 2)
    assert loss(
        logits.repeat(3, 1), label.repeat(3), reduction_override='none'
    ).shape == (3,)
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\)'):
        loss(logits, torch.tensor([3]))
    with pytest.raises(ValueError, match='reduction'):
        MarginLogitSmoothLoss(reduction='avg')


def test_rank_losses_single_class_and_empty_batch():
    # one class: every pair is same-class (MRL mask 0) and every relevance
    # and confidence is 1 (nDCG = 1): both losses are exactly 0
    raw = torch.randn(4, 1)
    mixed, targets, _ = mix_inputs(
        torch.randn(4, 2), torch.zeros(4), 1, num_mixup=3, alpha=1.0
    )
    mixed_logits = torch.randn(12, 1)
    for faithful in (True, False):
        loss = MixupMarginRankingLoss(faithful_broadcast=faithful)
        assert float(loss(raw, mixed_logits[:4], targets[:4])) == 0
    assert float(MixupNDCGLoss()(raw, mixed_logits, targets)) == 0
    with pytest.raises(ValueError, match=r'raw batch \(0 rows\)'):
        MixupNDCGLoss()(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 3))
