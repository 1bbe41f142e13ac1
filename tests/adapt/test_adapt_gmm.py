"""EM for per-class diagonal GMMs, k-means, pseudo-label rules against hand values."""

import math

import pytest
import torch

from mmcompress.adapt import (
    ClassFeatureBank,
    ClassGMM,
    batched_kmeans,
    class_means,
    fit_class_gmms,
    label_quality,
    prototype_scores,
    pseudo_labels,
    threshold_at_coverage,
)


def two_component_sample(n, seed=0):
    """Weights 0.3/0.7, means (-3, 0)/(3, 2), std (0.5, 1.0)/(1.5, 0.3)."""
    gen = torch.Generator().manual_seed(seed)
    n1 = int(0.3 * n)
    a = torch.randn(n1, 2, generator=gen) * torch.tensor([0.5, 1.0])
    b = torch.randn(n - n1, 2, generator=gen) * torch.tensor([1.5, 0.3])
    return torch.cat([a + torch.tensor([-3.0, 0.0]), b + torch.tensor([3.0, 2.0])])


def sorted_params(gmm, c):
    order = gmm.mu[c, :, 0].argsort()
    return gmm.mu[c, order], gmm.var[c, order], gmm.log_pi[c, order].exp()


def test_em_recovers_known_two_component_mixture(deterministic):
    gmm = fit_class_gmms([two_component_sample(8000)], num_components=2)
    mu, var, pi = sorted_params(gmm, 0)
    torch.testing.assert_close(
        mu, torch.tensor([[-3.0, 0.0], [3.0, 2.0]]), atol=0.06, rtol=0
    )
    torch.testing.assert_close(
        var, torch.tensor([[0.25, 1.0], [2.25, 0.09]]), atol=0, rtol=0.08
    )
    torch.testing.assert_close(pi, torch.tensor([0.3, 0.7]), atol=0.01, rtol=0)
    assert bool(gmm.converged[0]) and gmm.n_iter < 100


def test_batched_fit_equals_fits_one_class_at_a_time(deterministic):
    first, second = two_component_sample(3000, 1), 2 * two_component_sample(2000, 2)
    joint = fit_class_gmms([first, second], num_components=2)
    for c, feats in enumerate((first, second)):
        alone = fit_class_gmms([feats], num_components=2)
        for a, b in zip(sorted_params(joint, c), sorted_params(alone, 0)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_log_likelihood_matches_hand_computation():
    mu = torch.tensor([[[0.0, 0.0], [2.0, 1.0]], [[-1.0, 3.0], [0.0, 0.0]]])
    var = torch.tensor([[[1.0, 4.0], [0.5, 0.25]], [[2.0, 1.0], [1.0, 1.0]]])
    pi = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    gmm = ClassGMM(mu, var, pi.log())
    x = torch.tensor([[1.0, 0.5], [-1.0, 2.0]])
    hand = torch.zeros(2, 2)
    for n in range(2):
        for c in range(2):
            total = 0.0
            for k in range(2):
                dens = pi[c, k].item()
                for d in range(2):
                    v = var[c, k, d].item()
                    diff = x[n, d].item() - mu[c, k, d].item()
                    dens *= math.exp(-diff * diff / (2 * v)) / math.sqrt(
                        2 * math.pi * v
                    )
                total += dens
            hand[n, c] = math.log(total)
    ll = gmm.log_likelihood(x)
    torch.testing.assert_close(ll, hand, atol=1e-5, rtol=1e-5)
    # rule: argmax over classes, below the threshold -> ignore
    assert pseudo_labels(ll).tolist() == [0, 1]
    mid = float(ll.max(1).values.min() + ll.max(1).values.max()) / 2
    kept = int(ll.max(1).values.argmax())
    expected = [255, 255]
    expected[kept] = int(ll[kept].argmax())
    assert pseudo_labels(ll, threshold=mid).tolist() == expected


def test_class_with_fewer_samples_than_components_gets_one_component():
    few = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    with pytest.warns(UserWarning, match=r'class 1: 3\); these classes are fitted'):
        gmm = fit_class_gmms([two_component_sample(500), few], num_components=4)
    assert torch.isfinite(gmm.log_pi[1]).tolist() == [True, False, False, False]
    torch.testing.assert_close(gmm.mu[1, 0], few.mean(0))
    torch.testing.assert_close(
        gmm.var[1, 0], few.var(0, unbiased=False) + 1e-6, atol=1e-4, rtol=1e-5
    )


def test_class_without_samples_is_never_labelled():
    with pytest.warns(UserWarning, match=r'classes \[1\] have no samples'):
        gmm = fit_class_gmms([two_component_sample(300), torch.zeros(0, 2)], 2)
    ll = gmm.log_likelihood(torch.tensor([[0.0, 0.0]]))
    assert ll[0, 1] == float('-inf') and torch.isfinite(ll[0, 0])


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centers.repeat_interleave(100, 0) + 0.1 * torch.randn(300, 2, generator=gen)
    found = batched_kmeans(x[None], 3, n_init=5)[0]
    order = (found[:, 0] + 2 * found[:, 1]).argsort()
    torch.testing.assert_close(found[order], centers, atol=0.05, rtol=0)


def test_prototype_scores_are_half_negative_squared_distances():
    means = torch.tensor([[0.0, 0.0], [3.0, 4.0], [float('nan'), 0.0]])
    x = torch.tensor([[3.0, 0.0]])
    scores = prototype_scores(x, means)
    assert scores.tolist() == [[-4.5, -8.0, float('-inf')]]
    feats = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.zeros(0, 2)]
    m = class_means(feats)
    assert m[0].tolist() == [2.0, 3.0] and torch.isnan(m[1]).all()


def test_threshold_at_coverage_keeps_the_best_share():
    best = torch.tensor([5.0, 1.0, 3.0, 4.0, 2.0])
    assert threshold_at_coverage(best, 0.4) == 4.0
    assert threshold_at_coverage(best, 1.0) == 1.0
    with pytest.raises(ValueError, match=r'coverage must be in \(0, 1\], got 0'):
        threshold_at_coverage(best, 0)


def test_label_quality_by_hand():
    gt = torch.tensor([0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 1, 1, 255, 2, 0])
    q = label_quality(pred, gt, num_classes=3)
    # labelled by both: pixels 0-2 and 4 (4 of 5 truly labelled pixels)
    assert q['coverage'] == pytest.approx(80.0)
    assert q['acc'] == pytest.approx(75.0)
    # IoU: class 0 1/2, class 1 1/2, class 2 1/1
    assert q['miou'] == pytest.approx(100 * (0.5 + 0.5 + 1.0) / 3)


def test_feature_bank_keeps_right_predictions_at_class_ratios():
    feats = torch.arange(20.0).view(10, 2)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    preds = torch.tensor([0, 0, 1, 0, 1, 1, 1, 1, 0, 1])
    bank = ClassFeatureBank(2, ratios=[1.0, 0.5], seed=0)
    bank.push(feats, labels, preds)
    out = bank.features()
    assert sorted(out[0][:, 0].tolist()) == [0.0, 2.0, 6.0]
    assert len(out[1]) == 2 and set(out[1][:, 0].tolist()) <= {
        8.0,
        10.0,
        12.0,
        14.0,
        18.0,
    }
