"""CASD: the comprehensive attention target on toy maps and the IW / LW losses
against hand values."""

import math

import pytest
import torch

from mmcompress.models.wsod import (
    CASDInputWiseLoss,
    CASDLayerWiseLoss,
    comprehensive_attention,
    minmax_normalize,
)


def test_target_is_the_max_over_aligned_flips():
    """Four views of a 1x3 map: s1, flip(s1'), s2, flip(s2'); the target is the
    element-wise max of the maps once the flipped ones are flipped back."""
    a = torch.tensor([[[0.1, 0.9, 0.2]]])
    b = torch.tensor([[[0.5, 0.1, 0.1]]])  # image frame
    c = torch.tensor([[[0.0, 0.0, 0.7]]])
    d = torch.tensor([[[0.3, 0.3, 0.3]]])
    views = [a, b.flip(-1), c, d.flip(-1)]
    target = comprehensive_attention(views, [False, True, False, True])
    assert torch.equal(target, torch.tensor([[[0.5, 0.9, 0.7]]]))
    assert not target.requires_grad


def test_target_resizes_other_scales_to_the_first_view():
    """A 2x2 view next to a 1x1 constant view: bilinear (align_corners False)
    upsampling of a constant is the constant."""
    small = torch.full((1, 1, 1), 0.6)
    big = torch.tensor([[[0.2, 0.8], [0.7, 0.1]]])
    target = comprehensive_attention([big, small], [False, False])
    assert torch.allclose(target, torch.tensor([[[0.6, 0.8], [0.7, 0.6]]]))


def test_minmax_normalize_per_map():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    expected = torch.tensor([[[0.0, 2.0], [1.0, 4.0]]]) / (4 + 1e-7)
    assert torch.allclose(minmax_normalize(maps), expected)


def test_input_wise_loss_hand_value():
    """One RoI, 1x2 cells, one channel, two views (second flipped).
    View 0 cells (0, 1) -> minmax (0, 1) -> sigmoid (0.5, s1); view 1 holds
    (1, 0) in its frame, i.e. (0, 1) in the image: the same attention. Target
    (0.5, s1) everywhere; MSE 0 -> loss 0. Changing view 1 to (0, 0) in its
    frame: attention (0.5, 0.5), target in the image (0.5, s1); view 1's
    target in its frame (s1, 0.5): MSE ((s1 - 0.5)^2 + 0) / 2."""
    s1 = 1 / (1 + math.exp(-1))
    view0 = torch.tensor([[[[0.0, 1.0]]]])
    loss = CASDInputWiseLoss(loss_weight=1.0)
    assert loss(view0, torch.tensor([[[[1.0, 0.0]]]])).item() == pytest.approx(0)
    value = loss(view0, torch.zeros(1, 1, 1, 2))
    assert value.item() == pytest.approx((s1 - 0.5) ** 2 / 2)


def test_input_wise_loss_divides_by_rois_and_weights():
    torch.manual_seed(0)
    views = [torch.randn(5, 3, 7, 7) for _ in range(4)]
    plain = CASDInputWiseLoss(divide_by_rois=False, loss_weight=1.0)(*views)
    official = CASDInputWiseLoss()(*views)
    assert official.item() == pytest.approx(0.1 * plain.item() / 5, rel=1e-6)


def test_layer_wise_loss_gradients_reach_every_view():
    torch.manual_seed(0)
    views = [
        torch.randn(2, 4, h, w, requires_grad=True)
        for h, w in ((8, 10), (8, 10), (12, 15), (12, 15))
    ]
    loss = CASDLayerWiseLoss()(*views)
    loss.backward()
    assert loss.item() > 0
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in views)


def test_layer_wise_attention_has_no_minmax():
    feats = torch.tensor([[[[2.0, -2.0]]]])
    attention = CASDLayerWiseLoss().attention(feats)
    assert torch.allclose(attention, torch.sigmoid(torch.tensor([[[2.0, -2.0]]])))
