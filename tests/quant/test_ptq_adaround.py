"""AdaRound pieces against hand values (h(V), V init, regulariser, beta schedule)."""

import math

import pytest
import torch

from mmcompress.quant import LSQQuantizer
from mmcompress.quant.ptq import (
    AdaRoundQuantizer,
    LinearTempDecay,
    init_v,
    rectified_sigmoid,
    rounding_regularizer,
)


def test_rectified_sigmoid_hand_values():
    v = torch.tensor([0.0, math.log(3.0), -math.log(3.0), 50.0, -50.0])
    # sigmoid: 0.5, 0.75, 0.25, ~1, ~0 -> *1.2 - 0.1: 0.5, 0.8, 0.2, 1.1->1, -0.1->0
    expected = torch.tensor([0.5, 0.8, 0.2, 1.0, 0.0])
    assert torch.allclose(rectified_sigmoid(v), expected, atol=1e-6)


def test_init_v_gives_the_fractional_part():
    w = torch.tensor([0.26, -0.26, 0.5, 1.09, -0.71])
    s = torch.tensor(0.1)
    # w / s = 2.6, -2.6, 5, 10.9, -7.1 -> fractional parts 0.6, 0.4, 0, 0.9, 0.9
    h = rectified_sigmoid(init_v(w, s))
    assert torch.allclose(h, torch.tensor([0.6, 0.4, 0.0, 0.9, 0.9]), atol=1e-4)
    # h = 0.6: sigmoid(V) = 0.7/1.2 -> V = log(0.7 / 0.5)
    assert init_v(w, s)[0].item() == pytest.approx(math.log(0.7 / 0.5), rel=1e-4)


def test_regulariser_hand_values():
    # h = 0.5: 1 - 0^beta = 1; h = 0.8: 1 - 0.6^beta; h = 1 and 0: 0
    v = torch.tensor([0.0, math.log(3.0), 50.0, -50.0])
    for beta in (2.0, 20.0):
        expected = 1 + (1 - 0.6**beta)
        assert rounding_regularizer(v, beta).item() == pytest.approx(expected, rel=1e-5)


def test_beta_schedule_brecq_linear_decay():
    decay = LinearTempDecay(100, warm_up=0.2, start_beta=20, end_beta=2)
    assert decay.in_warm_up(19) and not decay.in_warm_up(20)
    assert decay(0) == 20 and decay(20) == 20
    # halfway through the decay (t = 60 of 20..100): 2 + 18 * 0.5
    assert decay(60) == pytest.approx(11.0)
    assert decay(100) == pytest.approx(2.0)


def _lsq(bits=4, channels=3, step=(0.1, 0.05, 0.2)):
    q = LSQQuantizer(bits, signed=True, per_channel=True, num_channels=channels)
    q.step.data = torch.tensor(step)
    q.initialized.fill_(1)
    return q


def test_adaround_quantizer_soft_start_and_hard_nearest():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, 3) * 0.2
    base = _lsq()
    ada = AdaRoundQuantizer(base, w)
    s = base.step.view(3, 1, 1, 1)
    inside = (w / s >= -8) & (w / s <= 7)
    # soft start: floor + fractional part = W wherever W is inside the grid
    assert torch.allclose(ada(w)[inside], w[inside], atol=1e-5)
    # hard rounding of the initial V (h = 1 iff frac >= 0.5) = nearest rounding
    ada.hard = True
    assert torch.allclose(ada(w), base(w), atol=1e-6)
    # the hard weight lies on the grid: the base quantizer returns it unchanged
    assert torch.allclose(base(ada(w)), ada(w), atol=1e-6)


def test_adaround_quantizer_gradient_reaches_v_only_inside():
    w = torch.tensor([[0.26, 5.0]])  # second element far above the 4-bit grid
    base = LSQQuantizer(4, signed=True)
    base.step.data = torch.tensor([0.1])
    base.initialized.fill_(1)
    ada = AdaRoundQuantizer(base, w)
    ada(w).sum().backward()
    assert ada.v.grad[0, 0] != 0
    assert ada.v.grad[0, 1] == 0
