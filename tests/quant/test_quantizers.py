"""Forward levels and gradients of every quantizer against the spec formulas."""

import copy
import math

import pytest
import torch

from mmcompress.quant.functions import (
    _finite_fallback,
    clamp_far_outside,
    daq_hard_round,
    daq_round,
    daq_soft_round,
    ewgs_discretize,
    gste_threshold_quantize,
    stat_of_finite,
)
from mmcompress.quant.quantizers import (
    DAQQuantizer,
    EWGSQuantizer,
    LSQQuantizer,
    N2UQActQuantizer,
    N2UQWeightQuantizer,
    UniformSTEQuantizer,
)


def _initialized(quantizer, data):
    quantizer(data)
    return quantizer


# ---------------------------------------------------------------- LSQ
def test_lsq_forward_levels_and_init():
    x = torch.tensor([-1.3, -0.26, 0.0, 0.31, 0.74, 5.0])
    q = LSQQuantizer(3, signed=True)
    out = q(x)
    expected_step = 2 * x.abs().mean() / math.sqrt(3)
    assert torch.allclose(q.step.detach(), expected_step.reshape(1))
    s = expected_step
    ref = torch.clamp(torch.round(x / s), -4, 3) * s
    assert torch.allclose(out, ref)
    assert q.qmin == -4 and q.qmax == 3
    assert set((out / s).round().tolist()) <= set(range(-4, 4))


def test_lsq_gradients_match_spec_formula():
    x = torch.tensor([-2.3, -0.71, 0.12, 0.46, 0.93, 3.7], requires_grad=True)
    q = LSQQuantizer(2, signed=True)
    q.initialized.fill_(1)
    q.signed.fill_(1)
    q.step.data.fill_(0.4)
    upstream = torch.tensor([0.5, -1.0, 2.0, 0.3, -0.7, 1.1])
    q(x).backward(upstream)
    s, qmin, qmax = 0.4, -2, 1
    v = x.detach() / s
    inside = (v >= qmin) & (v <= qmax)
    expected_dx = upstream * inside
    ds_elem = torch.where(
        v < qmin,
        torch.full_like(v, qmin),
        torch.where(v > qmax, torch.full_like(v, qmax), torch.round(v) - v),
    )
    g = 1 / math.sqrt(x.numel() * qmax)
    expected_ds = (upstream * ds_elem).sum() * g
    assert torch.allclose(x.grad, expected_dx)
    assert torch.allclose(q.step.grad, expected_ds.reshape(1), atol=1e-6)


def test_lsq_per_channel_grad_scale_uses_channel_size():
    w = torch.randn(4, 3, 2, 2, requires_grad=True)
    q = LSQQuantizer(4, signed=True, per_channel=True, num_channels=4)
    q(w)
    assert q.step.shape == (4,)
    assert q.gradient_scale(w) == pytest.approx(1 / math.sqrt(12 * 7))
    upstream = torch.randn_like(w)
    q(w).backward(upstream)
    step = q.step.detach().view(-1, 1, 1, 1)
    v = w.detach() / step
    elem = torch.where(
        v < -8,
        torch.full_like(v, -8.0),
        torch.where(v > 7, torch.full_like(v, 7.0), torch.round(v) - v),
    )
    expected = (upstream * elem).sum(dim=(1, 2, 3)) / math.sqrt(12 * 7)
    assert torch.allclose(q.step.grad, expected, atol=1e-6)


def test_unsigned_detection_from_data():
    q = LSQQuantizer(4)
    q(torch.rand(20))
    assert not q.is_signed and (q.qmin, q.qmax) == (0, 15)
    q2 = LSQQuantizer(4)
    q2(torch.randn(20))
    assert q2.is_signed and (q2.qmin, q2.qmax) == (-8, 7)


# ----------------------------------------------------------- uniform STE
def test_uniform_ste_levels_and_clipping_gradient():
    q = UniformSTEQuantizer(2, signed=False, observer='current')
    x = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.5], requires_grad=True)
    out = q(x)
    scale = 1.5 / 3
    assert torch.allclose(out, torch.round(x.detach() / scale) * scale)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones(5))


def test_uniform_ema_observer_updates_only_in_training():
    q = UniformSTEQuantizer(8, signed=True, observer='ema', momentum=0.5)
    q(torch.tensor([-1.0, 1.0]))
    q(torch.tensor([-3.0, 3.0]))
    assert q.running_max.item() == pytest.approx(2.0)
    q.eval()
    q(torch.tensor([-9.0, 9.0]))
    assert q.running_max.item() == pytest.approx(2.0)


# ---------------------------------------------------------------- EWGS
def test_ewgs_discretizer_backward_formula():
    x = torch.tensor([0.05, 0.3, 0.49, 0.7, 0.93], requires_grad=True)
    delta = torch.tensor(0.2)
    upstream = torch.tensor([1.0, -2.0, 0.5, -0.1, 3.0])
    out = ewgs_discretize(x, 4, delta)
    x_q = torch.round(x.detach() * 3) / 3
    assert torch.allclose(out, x_q)
    out.backward(upstream)
    expected = upstream * (1 + 0.2 * torch.sign(upstream) * (x.detach() - x_q))
    assert torch.allclose(x.grad, expected)


@pytest.mark.parametrize('delta', [0.0, 0.3])
def test_ewgs_weight_quantizer_gradients(delta):
    q = EWGSQuantizer(2, role='weight', delta=delta)
    q.initialized.fill_(1)
    q.lower.data.fill_(-1.0)
    q.upper.data.fill_(1.5)
    w = torch.tensor([-1.4, -0.6, 0.1, 0.55, 1.2, 2.0], requires_grad=True)
    upstream = torch.tensor([0.4, -1.0, 0.8, 2.0, -0.6, 1.0])
    out = q(w)
    width = 2.5
    x_n = ((w.detach() + 1.0) / width).clamp(0, 1)
    x_q = torch.round(x_n * 3) / 3
    assert torch.allclose(out, 2 * x_q - 1)
    out.backward(upstream)
    g_xq = 2 * upstream
    g_xn = g_xq * (1 + delta * torch.sign(g_xq) * (x_n - x_q))
    inside = ((w.detach() + 1.0) / width > 0) & ((w.detach() + 1.0) / width < 1)
    g_xn = g_xn * inside
    assert torch.allclose(w.grad, g_xn / width, atol=1e-6)
    w0 = w.detach()
    dl = (g_xn * (w0 - 1.5) / width**2).sum()
    du = (g_xn * -(w0 + 1.0) / width**2).sum()
    assert torch.allclose(q.lower.grad, dl.reshape(1), atol=1e-6)
    assert torch.allclose(q.upper.grad, du.reshape(1), atol=1e-6)


def test_ewgs_init_follows_official_rule():
    x = torch.randn(1000).relu()
    q = _initialized(EWGSQuantizer(4, role='activation'), x)
    assert q.lower.item() == pytest.approx(x.min().item())
    assert q.upper.item() == pytest.approx(
        3 * x.std().item() / math.sqrt(1 - 2 / math.pi), rel=1e-5
    )
    w = torch.randn(64, 3, 3, 3)
    qw = _initialized(EWGSQuantizer(4, role='weight'), w)
    assert qw.upper.item() == pytest.approx(3 * w.std().item(), rel=1e-5)
    assert qw.lower.item() == pytest.approx(-3 * w.std().item(), rel=1e-5)


def test_ewgs_one_bit_weights_are_plus_minus_one():
    q = _initialized(EWGSQuantizer(1, role='weight'), torch.randn(100))
    assert set(q(torch.randn(100)).tolist()) <= {-1.0, 1.0}


# ----------------------------------------------------------------- DAQ
def test_daq_soft_value_equals_hard_rounding():
    t = torch.linspace(0, 7, 1001)
    # the last two pairs are the edges of the valid range (DAQQuantizer checks)
    pairs = ((2.0, 1.0), (2.0, 2.0), (1.0, 0.5), (700.0, 1.0), (2.0, 1e-150))
    for temperature, sigma in pairs:
        soft = daq_soft_round(t, temperature, sigma)
        assert torch.allclose(soft, daq_hard_round(t), atol=1e-5)
        assert torch.equal(daq_round(t, temperature, sigma), daq_hard_round(t))


def test_daq_gradient_matches_closed_form():
    r = torch.tensor([0.02, 0.2, 0.499, 0.55, 0.8, 0.98])
    t = (r + 3).requires_grad_(True)
    temperature, sigma = 2.0, 2.0
    daq_round(t, temperature, sigma).sum().backward()
    m0, m1 = torch.exp(-r), torch.exp(r - 1)
    far = math.exp(-1 / sigma**2)
    upper = r > 0.5
    s0 = torch.where(upper, m0 * far, m0)
    s1 = torch.where(upper, m1, m1 * far)
    c = 1 / math.expm1(temperature)
    dsig = math.exp(temperature) / (1 + math.exp(temperature)) ** 2
    expected = (1 + 2 * c) * dsig * temperature * (s0 + s1) / (s0 - s1).abs()
    assert torch.allclose(t.grad, expected, rtol=1e-5)
    # the spec's numbers for T=2, sigma=2: ~0.50 at a level, ~2.2 near the midpoint
    assert t.grad[0].item() == pytest.approx(0.50, abs=0.03)
    assert t.grad[2].item() == pytest.approx(2.2, abs=0.1)


@pytest.mark.parametrize('role', ['weight', 'activation'])
def test_daq_train_forward_equals_eval_hard_path(role):
    torch.manual_seed(0)
    q = DAQQuantizer(3, role=role)
    data = (
        torch.randn(2, 4, 5, 5) if role == 'weight' else torch.randn(2, 4, 5, 5).relu()
    )
    train_out = q(data)
    q.eval()
    eval_out = q(data)
    assert torch.equal(train_out, eval_out)
    levels = 7
    if role == 'weight':
        assert torch.allclose(
            ((train_out * levels + levels) / 2).round(),
            (train_out * levels + levels) / 2,
            atol=1e-5,
        )
    else:
        assert q.upper.item() == pytest.approx(3 * data.std().item(), rel=1e-5)
        step = q.upper.item() / levels
        expected = daq_hard_round((data / step).clamp(0, levels)) / levels
        assert torch.allclose(eval_out, expected)


def test_daq_weight_gradient_flows_to_bounds():
    q = DAQQuantizer(2, role='weight')
    w = torch.randn(8, 3, requires_grad=True)
    q(w).pow(2).sum().backward()
    assert q.lower.grad is not None and q.upper.grad is not None
    assert torch.isfinite(w.grad).all()


# ---------------------------------------------------------------- N2UQ
def _gste_reference(x, start, widths, interval):
    """Direct transcription of the spec's loop (independent of bucketize)."""
    starts, acc = [], start
    for i in range(widths.numel()):
        starts.append(acc)
        acc = acc + widths[i]
    forward = sum(interval * (x > s + a / 2).float() for s, a in zip(starts, widths))
    backward = sum(interval * ((x - s) / a).clamp(0, 1) for s, a in zip(starts, widths))
    return forward.detach() + backward - backward.detach()


def test_n2uq_gste_matches_loop_reference():
    torch.manual_seed(0)
    x1 = (torch.rand(50) * 3 - 0.5).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    start1 = torch.tensor(0.1, requires_grad=True)
    start2 = start1.detach().clone().requires_grad_(True)
    w1 = torch.tensor([0.3, 0.9, 0.5], requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    upstream = torch.randn(50)
    out1 = gste_threshold_quantize(x1, start1, w1, 2 / 3)
    out2 = _gste_reference(x2, start2, w2, 2 / 3)
    assert torch.allclose(out1, out2)
    out1.backward(upstream)
    out2.backward(upstream)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6)
    assert torch.allclose(start1.grad, start2.grad, atol=1e-5)
    assert torch.allclose(w1.grad, w2.grad, atol=1e-5)


def test_n2uq_act_levels_are_uniform_with_learned_thresholds():
    q = N2UQActQuantizer(2, init='official')
    q.a.data = torch.tensor([0.2, 1.0, 0.6])
    x = torch.tensor([-1.0, 0.05, 0.15, 0.5, 0.75, 1.5, 1.6, 9.0])
    out = q(x)
    # segment starts 0, 0.2, 1.2; thresholds 0.1, 0.7, 1.5
    assert torch.allclose(out, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3.0]) * 2 / 3)


def test_n2uq_act_data_init_covers_input_range():
    x = torch.rand(1000) * 6
    q = _initialized(N2UQActQuantizer(3), x)
    out = q(x)
    assert out.max().item() <= x.max().item() + 1e-5
    assert len(torch.unique(out)) == 8


def test_n2uq_weight_levels_and_ste_gradient():
    w = torch.randn(3, 4, 2, 2, requires_grad=True)
    q = N2UQWeightQuantizer(2)
    out = q(w)
    sf = 1.5 * w.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
    levels = torch.tensor([-1, -1 / 3, 1 / 3, 1.0])
    normalized = out.detach() / sf
    assert torch.allclose(
        normalized,
        levels[torch.argmin((normalized.unsqueeze(-1) - levels).abs(), -1)],
        atol=1e-5,
    )
    upstream = torch.randn_like(w)
    out.backward(upstream)
    assert torch.allclose(w.grad, upstream / sf, rtol=1e-5)


# ------------------------------------------------ +-inf and extreme inputs
INF = float('inf')


def test_stat_of_finite_is_the_plain_reduction_on_finite_input():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5)
    for fn, plain in (
        ('min', lambda t, **k: t.amin(**k)),
        ('max', lambda t, **k: t.amax(**k)),
        ('mean', lambda t, **k: t.mean(**k)),
        ('absmean', lambda t, **k: t.abs().mean(**k)),
        ('std', lambda t, **k: t.std(**k)),
    ):
        assert torch.equal(stat_of_finite(x, fn), plain(x))
        assert torch.equal(stat_of_finite(x, fn, dim=1), plain(x, dim=1))
        assert torch.equal(
            stat_of_finite(x, fn, dim=[0, 2], keepdim=True),
            plain(x, dim=[0, 2], keepdim=True),
        )
        # the overflow-free formula (always computed off the CPU) agrees
        data = x.abs() if fn == 'absmean' else x
        assert torch.allclose(
            _finite_fallback(data, fn, 1, False, True),
            plain(x, dim=1),
            rtol=1e-5,
            atol=1e-6,
        )
        assert torch.allclose(
            _finite_fallback(data, fn, None, False, True),
            plain(x),
            rtol=1e-5,
            atol=1e-6,
        )


def test_stat_of_finite_leaves_out_non_finite_and_does_not_overflow():
    rows = torch.tensor(
        [
            [1.0, -2.0, 4.0, INF],
            [3.0, float('nan'), -INF, 5.0],
            [INF, -INF, float('nan'), INF],
        ]
    )
    assert stat_of_finite(rows, 'min', dim=1).tolist() == [-2.0, 3.0, 0.0]
    assert stat_of_finite(rows, 'max', dim=1).tolist() == [4.0, 5.0, 0.0]
    assert torch.allclose(
        stat_of_finite(rows, 'mean', dim=1), torch.tensor([1.0, 4.0, 0.0])
    )
    assert torch.allclose(
        stat_of_finite(rows, 'absmean', dim=1), torch.tensor([7 / 3, 4.0, 0.0])
    )
    assert torch.allclose(
        stat_of_finite(rows, 'std', dim=1),
        torch.tensor([math.sqrt(9.0), math.sqrt(2.0), 0.0]),
    )
    # float32 sums of values near the float32 limit overflow; these do not
    big = torch.full((1000,), 1e37)
    assert not math.isfinite(big.mean().item())
    assert not math.isfinite(big.std().item())
    assert stat_of_finite(big, 'mean').item() == pytest.approx(1e37, rel=1e-5)
    assert stat_of_finite(big, 'std').item() == 0.0
    spread = torch.tensor([1e38, -1e38, 2e38, 3e38, 3e38])
    assert not math.isfinite(spread.std().item())
    assert stat_of_finite(spread, 'std').item() == pytest.approx(
        spread.double().std().item(), rel=1e-5
    )


def test_clamp_far_outside_keeps_values_within_one_width():
    low, high = torch.tensor(-1.0), torch.tensor(3.0)
    x = torch.tensor([-INF, -5.0, -4.5, 0.2, 6.9, 7.0, 1e38, INF])
    out = clamp_far_outside(x, low, high)
    assert torch.equal(out, torch.tensor([-5.0, -5.0, -4.5, 0.2, 6.9, 7.0, 7.0, 7.0]))


def test_lsq_inf_is_a_clipped_element_in_the_step_gradient():
    # as test_lsq_gradients_match_spec_formula, with +-inf among the inputs
    x = torch.tensor([-INF, -0.71, 0.12, 0.46, INF, 3.7], requires_grad=True)
    q = LSQQuantizer(2, signed=True)
    q.initialized.fill_(1)
    q.signed.fill_(1)
    q.step.data.fill_(0.4)
    upstream = torch.tensor([0.5, -1.0, 2.0, 0.3, -0.7, 1.1])
    out = q(x)
    assert out[0].item() == pytest.approx(-0.8) and out[4].item() == pytest.approx(0.4)
    out.backward(upstream)
    s, qmin, qmax = 0.4, -2, 1
    v = x.detach() / s
    inside = (v >= qmin) & (v <= qmax)
    ds_elem = torch.where(
        v < qmin,
        torch.full_like(v, qmin),
        torch.where(v > qmax, torch.full_like(v, qmax), torch.round(v) - v),
    )
    # x/s = [-inf, -1.775, 0.3, 1.15, inf, 9.25]: clipped ones give qmin / qmax;
    # 0.5*-2 + -1*(-2+1.775) + 2*(0-0.3) + 0.3*1 + -0.7*1 + 1.1*1, / sqrt(6*1)
    hand = (-1.0 + 0.225 - 0.6 + 0.3 - 0.7 + 1.1) / math.sqrt(6)
    expected_ds = (upstream * ds_elem).sum() / math.sqrt(6)
    assert expected_ds.item() == pytest.approx(hand, abs=1e-6)
    assert torch.allclose(q.step.grad, expected_ds.reshape(1), atol=1e-6)
    assert torch.equal(x.grad, upstream * inside)


def test_ewgs_activation_inf_gives_the_finite_formula_gradients():
    # bounds [0.5, 2.5]; +-inf saturate, the rest as the spec's formula
    q = EWGSQuantizer(2, role='activation', delta=0.2)
    q.initialized.fill_(1)
    q.lower.data.fill_(0.5)
    q.upper.data.fill_(2.5)
    x = torch.tensor([-INF, 0.9, 1.4, 2.2, INF, 1e38], requires_grad=True)
    upstream = torch.tensor([0.4, -1.0, 0.8, 2.0, -0.6, 1.0])
    out = q(x)
    assert out[[0, 4, 5]].tolist() == [0.0, 1.0, 1.0]
    out.backward(upstream)
    x0 = x.detach().clamp(-10, 10)
    x_n = ((x0 - 0.5) / 2.0).clamp(0, 1)
    x_q = torch.round(x_n * 3) / 3
    g_xn = upstream * (1 + 0.2 * torch.sign(upstream) * (x_n - x_q))
    g_xn = g_xn * ((x_n > 0) & (x_n < 1))
    assert torch.allclose(x.grad, g_xn / 2.0, atol=1e-6)
    dl = (g_xn * (x0 - 2.5) / 4.0).sum()
    du = (g_xn * -(x0 - 0.5) / 4.0).sum()
    assert torch.allclose(q.lower.grad, dl.reshape(1), atol=1e-6)
    assert torch.allclose(q.upper.grad, du.reshape(1), atol=1e-6)


def _outputs_and_grads(quantizer, x, upstream):
    quantizer = copy.deepcopy(quantizer)
    x = x.clone().requires_grad_(True)
    out = quantizer(x)
    out.backward(upstream)
    grads = {n: p.grad.clone() for n, p in quantizer.named_parameters()}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize(
    'make',
    [
        lambda: EWGSQuantizer(3, role='activation', delta=0.1),
        lambda: EWGSQuantizer(3, role='weight', delta=0.1),
        lambda: DAQQuantizer(3, role='activation'),
        lambda: N2UQActQuantizer(3),
        lambda: LSQQuantizer(3),
        lambda: UniformSTEQuantizer(3),
    ],
)
def test_inf_input_gives_the_gradients_of_a_finite_clipped_input(make):
    torch.manual_seed(0)
    quantizer = _initialized(make(), torch.randn(64).abs())
    if isinstance(quantizer, UniformSTEQuantizer):
        quantizer.eval()  # freeze the EMA range (inf batches do not update it)
    finite = torch.tensor([-30.0, 0.1, 0.5, 0.9, 1.7, 30.0])  # 2 clipped
    with_inf = finite.clone()
    with_inf[0], with_inf[-1] = -INF, INF
    upstream = torch.tensor([0.3, -1.0, 0.5, 2.0, -0.4, 0.8])
    out_f, grad_f, params_f = _outputs_and_grads(quantizer, finite, upstream)
    out_i, grad_i, params_i = _outputs_and_grads(quantizer, with_inf, upstream)
    assert torch.equal(out_i, out_f)
    assert torch.equal(grad_i, grad_f)
    for name in params_f:
        assert torch.allclose(params_i[name], params_f[name], atol=1e-7), name
        assert params_f[name].abs().sum() > 0, name  # the check is not vacuous


@pytest.mark.parametrize(
    'make',
    [
        lambda: DAQQuantizer(3, role='weight'),
        lambda: N2UQWeightQuantizer(3),
        lambda: UniformSTEQuantizer(3, observer='current'),
    ],
)
def test_weight_range_from_the_tensor_ignores_inf(make):
    # the range / statistics come from the finite elements: the finite part
    # quantizes as if the inf weights were absent; inf gives the end levels
    torch.manual_seed(0)
    w = torch.randn(2, 6)
    with_inf = torch.cat([w, torch.tensor([[INF], [-INF]])], dim=1)
    quantizer = _initialized(make(), w)
    upstream = torch.linspace(-1, 2, 14).reshape(2, 7)
    out_f, grad_f, params_f = _outputs_and_grads(quantizer, w, upstream[:, :6])
    out_i, grad_i, params_i = _outputs_and_grads(quantizer, with_inf, upstream)
    assert torch.allclose(out_i[:, :6], out_f, atol=1e-6)
    assert torch.allclose(grad_i[:, :6], grad_f, atol=1e-6)
    assert grad_i[:, 6].eq(0).all()
    assert out_i[0, 6].item() >= out_f[0].max().item()
    assert out_i[1, 6].item() <= out_f[1].min().item()
    for name in params_f:
        assert torch.allclose(params_i[name], params_f[name], atol=1e-6), name
