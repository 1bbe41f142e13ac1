"""The fused kernels (``LSQQuantizer`` / ``EWGSQuantizer`` / ``DAQQuantizer`` /
``N2UQActQuantizer(fused=True)``) against the eager quantizers.

Output bit for bit, input gradient bit for bit (DAQ: to a few float roundings
of the eager autograd gradient), range-parameter gradients to float
rounding (the same sums in another order), on hand values, special values
(+-inf, NaN, -0, ties), every parameter layout and both float dtypes; the
fallback when the kernels cannot be built.
"""

import math
import warnings

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import kernels
from mmcompress.quant.functions import lsq_fake_quant
from mmcompress.quant.kernels import fused_lsq_fake_quant, load_kernels
from mmcompress.quant.quantizers import (
    DAQQuantizer,
    EWGSQuantizer,
    LSQQuantizer,
    N2UQActQuantizer,
    N2UQWeightQuantizer,
)

INF = float('inf')


@pytest.fixture(scope='module', autouse=True)
def kernel():
    """The kernel must build here (g++ and ninja are part of the environment)."""
    ops = load_kernels()
    assert ops is not None, kernels.kernel_error()
    return ops


def _bits(t):
    """The raw bit patterns of a float tensor (so -0.0 differs from 0.0)."""
    return t.reshape(-1).view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _run(fn, x, step, qmin, qmax, factor, upstream):
    x = x.clone().requires_grad_()
    step = step.clone().requires_grad_()
    out = fn(x, step, qmin, qmax, factor)
    out.backward(upstream)
    return out.detach(), x.grad, step.grad


def _step_grad_in_double(x, step, qmin, qmax, factor, upstream):
    """The eager step-gradient terms (in x's dtype) summed in float64, and the
    sum of their magnitudes (the scale of a float summation error)."""
    v = x / step
    level = torch.round(v).clamp(qmin, qmax)
    terms = upstream * torch.where((v >= qmin) & (v <= qmax), level - v, level)
    dims = [d for d in range(x.dim()) if step.dim() < x.dim() or step.shape[d] == 1]
    terms = terms.double()
    total = terms.sum(dim=dims, keepdim=True).reshape(step.shape)
    scale = terms.abs().sum(dim=dims, keepdim=True).reshape(step.shape)
    return total.to(x.dtype) * factor, scale * factor


def _assert_equal_to_eager(x, step, qmin, qmax, factor=0.1, seed=1):
    """Output and input gradient bit for bit; step gradient: the float64 sum
    of the eager terms (up to the final rounding), and close to the eager
    float32 sum to within its summation error bound."""
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    upstream = upstream.to(x.dtype)
    ref = _run(lsq_fake_quant, x, step, qmin, qmax, factor, upstream)
    got = _run(fused_lsq_fake_quant, x, step, qmin, qmax, factor, upstream)
    nan = torch.isnan(ref[0]).reshape(-1)
    assert torch.equal(nan, torch.isnan(got[0]).reshape(-1))
    assert torch.equal(_bits(ref[0])[~nan], _bits(got[0])[~nan])
    assert torch.equal(_bits(ref[1]), _bits(got[1]))
    exact, scale = _step_grad_in_double(x, step, qmin, qmax, factor, upstream)
    torch.testing.assert_close(got[2], exact, rtol=1e-6, atol=0, equal_nan=True)
    # a float sum of n terms is within ~log2(n) * eps * sum|term| of the exact
    bound = 32 * torch.finfo(x.dtype).eps * scale
    finite = torch.isfinite(ref[2])
    assert torch.equal(finite, torch.isfinite(got[2]))
    assert ((got[2] - ref[2])[finite].abs() <= bound[finite]).all()
    return got


def test_fused_hand_values():
    # s = 0.5, levels [-2, 1]: x/s = [0.52, -1.8, 6, -0.6, 0.5] -> round
    # [1, -2, 1 (clipped), -1, 0 (tie to even)]
    x = torch.tensor([0.26, -0.9, 3.0, -0.3, 0.25], requires_grad=True)
    step = torch.tensor(0.5, requires_grad=True)
    out = fused_lsq_fake_quant(x, step, -2, 1, 0.25)
    assert out.tolist() == [0.5, -1.0, 0.5, -0.5, 0.0]
    out.backward(torch.tensor([1.0, 2.0, 3.0, -1.0, 4.0]))
    assert x.grad.tolist() == [1.0, 2.0, 0.0, -1.0, 4.0]
    # 1*(1-0.52) + 2*(-2+1.8) + 3*1 + -1*(-1+0.6) + 4*(0-0.5), times 0.25
    hand = (0.48 - 0.4 + 3.0 + 0.4 - 2.0) * 0.25
    assert step.grad.item() == pytest.approx(hand, abs=1e-6)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_special_values_equal_eager(dtype):
    # +-inf and overflowing x/s are clipped elements, NaN stays NaN (and makes
    # the step gradient NaN), -0.0 and the signs of rounded zeros are kept,
    # ties round to even
    x = torch.tensor(
        [INF, -INF, float('nan'), -0.0, 0.0, -0.3, 0.3, 0.5, 1.5, 2.5, -2.5, 3e38]
    )
    for qmin, qmax in ((-8, 7), (0, 15)):
        got = _assert_equal_to_eager(
            x.to(dtype), torch.tensor(1.0, dtype=dtype), qmin, qmax
        )
        assert torch.isnan(got[2]).all()
        finite = x[[0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11]].to(dtype)
        _assert_equal_to_eager(finite, torch.tensor(0.7, dtype=dtype), qmin, qmax)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize(
    'shape, axis',
    [
        ((2, 3, 37, 41), None),  # one step, not a multiple of the lanes
        ((3, 16, 20, 20), None),  # more than one chunk of 16384
        ((12, 5, 3, 3), 0),  # conv weight per output channel
        ((4, 6, 9, 9), 1),  # activation per channel (runs of 81)
        ((5, 7), 1),  # linear input per feature (runs of 1)
        ((40, 700), 0),  # linear weight, channels spanning chunks
    ],
)
def test_fused_equals_eager_on_every_layout(shape, axis, dtype):
    gen = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(shape, generator=gen)).to(dtype)
    if axis is None:
        step = torch.tensor(0.4, dtype=dtype).reshape([1] * len(shape))
    else:
        size = [1] * len(shape)
        size[axis] = shape[axis]
        step = (0.05 + torch.rand(size, generator=gen)).to(dtype)
    for qmin, qmax in ((-8, 7), (0, 15), (-128, 127)):
        _assert_equal_to_eager(x, step, qmin, qmax, factor=1 / math.sqrt(7))


def test_fused_step_gradient_independent_of_threads():
    x = torch.randn(8, 64, 14, 14)
    upstream = torch.randn_like(x)
    step = torch.tensor(0.3)
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            grads.append(_run(fused_lsq_fake_quant, x, step, -8, 7, 1.0, upstream))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*grads):
        assert torch.equal(_bits(a), _bits(b))


def test_fused_inputs_outside_the_kernel_use_the_eager_function():
    # a non-contiguous x, a bfloat16 x, a step varying along two axes
    x = torch.randn(6, 5)
    cases = [
        (x.t(), torch.tensor(0.3)),
        (x.bfloat16(), torch.tensor(0.3, dtype=torch.bfloat16)),
        (x, 0.1 + torch.rand(6, 5)),
    ]
    for data, step in cases:
        assert kernels.kernel_axis(data, step) is None
        ref = lsq_fake_quant(data, step, -8, 7, 1.0)
        assert torch.equal(fused_lsq_fake_quant(data, step, -8, 7, 1.0), ref)


@pytest.mark.parametrize(
    'spec',
    [
        dict(bits=4, signed=True, per_channel=True, num_channels=8),
        dict(bits=4, signed=True, per_channel=True, num_channels=8, num_groups=2),
        dict(bits=3),
    ],
)
def test_fused_quantizer_training_step_equals_eager(spec):
    """Conv layer with weight and input LSQ quantizers, fused vs eager: same
    output, same gradients of the weight, the input and the steps."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    x = torch.randn(2, 3, 10, 10)
    results = []
    for fused in (False, True):
        wq = LSQQuantizer(fused=fused, **spec)
        aq = LSQQuantizer(4, fused=fused)
        layer = nn.Conv2d(3, 8, 3)
        layer.load_state_dict(conv.state_dict())
        inp = x.clone().requires_grad_()
        out = nn.functional.conv2d(aq(inp), wq(layer.weight), layer.bias)
        (out**2).mean().backward()
        results.append((out, inp.grad, layer.weight.grad, wq.step.grad, aq.step.grad))
    assert 'fused=True' in repr(wq)
    for ref, got in zip(*results):
        torch.testing.assert_close(got, ref)


def test_fused_falls_back_with_one_warning_without_a_compiler(monkeypatch):
    from torch.utils import cpp_extension

    def no_compiler(**kwargs):
        raise RuntimeError('c++: command not found')

    monkeypatch.setattr(kernels, '_STATE', {})
    monkeypatch.setattr(cpp_extension, 'load', no_compiler)
    q = LSQQuantizer(4, signed=True, fused=True)
    x = torch.randn(4, 10)
    with pytest.warns(
        RuntimeWarning, match='fused quantizer kernels could not be built'
    ):
        out = q(x)
    assert 'c++: command not found' in kernels.kernel_error()
    eager, fused = _ewgs_pair(4, 'weight', 0.2, torch.float32, x)
    others = [
        _pair(DAQQuantizer, x, torch.float32, 4, 'weight'),
        _pair(N2UQActQuantizer, x, torch.float32, 4),
        (N2UQWeightQuantizer(4), N2UQWeightQuantizer(4, fused=True)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no second warning
        again = q(x)
        assert torch.equal(fused(x), eager(x))
        for eager_q, fused_q in others:
            assert torch.equal(fused_q(x), eager_q(x))
    ref = LSQQuantizer(4, signed=True)
    assert torch.equal(out, ref(x)) and torch.equal(again, out)


# ---------------------------------------------------------------- EWGS
def _ewgs_pair(bits, role, delta, dtype, data, **kwargs):
    """An initialized eager EWGS quantizer and a fused copy of it."""
    eager = EWGSQuantizer(bits, role, delta=delta, **kwargs).to(dtype)
    eager(data)
    fused = EWGSQuantizer(bits, role, delta=delta, fused=True, **kwargs).to(dtype)
    fused.load_state_dict(eager.state_dict())
    return eager, fused


def _ewgs_run(quantizer, x, upstream):
    x = x.clone().requires_grad_()
    out = quantizer(x)
    out.backward(upstream)
    return out.detach(), x.grad, quantizer.lower.grad, quantizer.upper.grad


def _assert_ewgs_equal(eager, fused, x, seed=1):
    """Output and input gradient bit for bit; lower / upper gradients within
    the float summation error bound of the eager sums."""
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    upstream = upstream.to(x.dtype)
    ref = _ewgs_run(eager, x, upstream)
    got = _ewgs_run(fused, x, upstream)
    nan = torch.isnan(ref[0]).reshape(-1)
    assert torch.equal(nan, torch.isnan(got[0]).reshape(-1))
    assert torch.equal(_bits(ref[0])[~nan], _bits(got[0])[~nan])
    assert torch.equal(_bits(ref[1]), _bits(got[1]))
    # the terms: grad_x (from x - lower) and grad_x * y (the denominator)
    lower = eager.broadcast(eager.lower.detach(), x)
    upper = eager.broadcast(eager.upper.detach(), x)
    y = ((x - lower) / (upper - lower)).nan_to_num()
    dims = [d for d in range(x.dim()) if lower.shape[d] == 1]
    denom = (ref[1] * y).abs().double().sum(dims).reshape(-1)
    scales = (ref[1].abs().double().sum(dims).reshape(-1) + denom, denom)
    eps = torch.finfo(x.dtype).eps
    for r, g, scale in zip(ref[2:], got[2:], scales):
        scale = scale.reshape(r.numel(), -1).sum(1)  # channels of a group
        finite = torch.isfinite(r)
        assert torch.equal(finite, torch.isfinite(g))
        assert ((g - r)[finite].abs() <= 32 * eps * scale[finite] + 1e-30).all()
    return got


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('delta', [0.0, 0.4])
def test_fused_ewgs_equals_eager(delta, dtype):
    gen = torch.Generator().manual_seed(0)
    act = torch.randn(4, 6, 15, 17, generator=gen).relu().to(dtype)
    weight = (0.1 * torch.randn(12, 6, 3, 3, generator=gen)).to(dtype)
    for bits in (1, 2, 4):
        _assert_ewgs_equal(*_ewgs_pair(bits, 'activation', delta, dtype, act), act)
        for kwargs in (
            {},
            dict(per_channel=True, num_channels=12),
            dict(per_channel=True, num_channels=12, num_groups=3),
        ):
            pair = _ewgs_pair(bits, 'weight', delta, dtype, weight, **kwargs)
            _assert_ewgs_equal(*pair, weight)
    per_channel = dict(per_channel=True, channel_axis=1, num_channels=6)
    pair = _ewgs_pair(4, 'activation', delta, dtype, act, **per_channel)
    _assert_ewgs_equal(*pair, act)


def test_fused_ewgs_special_values_and_hand_values():
    # bounds [0.5, 2.5] (width 2), 4 levels: x_n = (x - 0.5) / 2
    eager, fused = _ewgs_pair(2, 'activation', 0.5, torch.float32, torch.ones(3))
    for q in (eager, fused):
        q.lower.data.fill_(0.5)
        q.upper.data.fill_(2.5)
    x = torch.tensor([1.0, 2.2, 0.0, 3.0, INF, -INF, float('nan'), 1e38, -0.0])
    got = _assert_ewgs_equal(eager, fused, x)
    # x_n = 0.25 -> x_q = round(0.75) / 3 = 1/3; x_n = 0.85 -> 1.0
    assert got[0][:2].tolist() == pytest.approx([1 / 3, 1.0])
    assert got[0][2:6].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert torch.isnan(got[0][6]) and got[0][7] == 1.0
    assert (got[1][2:6] == 0).all() and torch.isnan(got[2]).all()


def test_fused_ewgs_hessian_recording_uses_the_eager_path():
    _, fused = _ewgs_pair(4, 'activation', 0.1, torch.float32, torch.rand(50))
    fused.record_output = True
    fused(torch.rand(50, requires_grad=True)).sum().backward()
    assert (
        fused.last_discretized is not None and fused.last_discretized.grad is not None
    )


def test_fused_quantizers_trace_under_torch_compile():
    """The kernels have fake implementations: torch.compile traces through
    them (no graph break at the kernels) and gives the eager values."""
    import torch._dynamo as dynamo

    x = torch.randn(2, 4, 5, 5).relu()
    for quantizer in (
        LSQQuantizer(4, fused=True),
        EWGSQuantizer(4, 'activation', fused=True),
        DAQQuantizer(4, 'activation', fused=True),
        N2UQActQuantizer(4, fused=True),
        N2UQWeightQuantizer(4, fused=True),
    ):
        quantizer(x)
        dynamo.reset()
        dynamo.utils.counters.clear()

        def step(t, quantizer=quantizer):
            return quantizer(t) * t

        results = []
        for fn in (torch.compile(step, backend='aot_eager'), step):
            data = x.clone().requires_grad_()
            out = fn(data)
            out.sum().backward()
            results.append((out.detach(), data.grad))
        breaks = ' '.join(dynamo.utils.counters['graph_break'])
        assert 'mmcompress_kernels' not in breaks and 'lock' not in breaks
        for got, ref in zip(*results):
            assert torch.equal(got, ref)
    dynamo.reset()


# ---------------------------------------------------------------- DAQ
def _param_grads(quantizer):
    return [p.grad for p in quantizer.parameters()]


def _quantizer_run(quantizer, x, upstream):
    x = x.clone().requires_grad_()
    out = quantizer(x)
    out.backward(upstream)
    return out.detach(), x.grad, *_param_grads(quantizer)


def _pair(cls, data, dtype, *args, **kwargs):
    """An initialized eager quantizer of ``cls`` and a fused copy of it."""
    eager = cls(*args, **kwargs).to(dtype)
    eager(data)
    fused = cls(*args, fused=True, **kwargs).to(dtype)
    fused.load_state_dict(eager.state_dict())
    return eager, fused


def _assert_output_equal(ref, got):
    nan = torch.isnan(ref).reshape(-1)
    assert torch.equal(nan, torch.isnan(got).reshape(-1))
    assert torch.equal(_bits(ref)[~nan], _bits(got)[~nan])


def _assert_daq_equal(eager, fused, x, seed=1):
    """Output bit for bit; gradients: the eager autograd gradients to a few
    float roundings (the kernel's exp differs from torch's by an ulp), and
    the float32 ones as close to the float64 eager gradients as the eager
    float32 ones are."""
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    upstream = upstream.to(x.dtype)
    ref = _quantizer_run(eager, x, upstream)
    got = _quantizer_run(fused, x, upstream)
    _assert_output_equal(ref[0], got[0])
    eps = torch.finfo(x.dtype).eps
    for r, g in zip(ref[1:], got[1:]):
        assert torch.equal(torch.isfinite(r), torch.isfinite(g))
        finite = torch.isfinite(r)
        # per element: a few ulps of the largest gradient; the sums: the
        # summation error bound (terms up to |grad x| * range, many terms)
        scale = r[finite].abs().max() if finite.any() else 1.0
        tol = 64 * eps * scale * (1 if r is ref[1] else math.sqrt(x.numel()))
        assert ((g - r)[finite].abs() <= tol).all(), (g - r).abs().max()
    return ref, got


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_daq_equals_eager(dtype):
    gen = torch.Generator().manual_seed(0)
    act = torch.randn(4, 6, 15, 17, generator=gen).relu().to(dtype)
    weight = (0.1 * torch.randn(12, 6, 3, 3, generator=gen)).to(dtype)
    for bits, temperature in ((1, 2.0), (2, 2.0), (4, 2.0), (4, 0.5)):
        kw = dict(temperature=temperature)
        _assert_daq_equal(
            *_pair(DAQQuantizer, act, dtype, bits, 'activation', **kw), act
        )
        for extra in (
            {},
            dict(per_channel=True, num_channels=12),
            dict(per_channel=True, num_channels=12, num_groups=3),
        ):
            pair = _pair(DAQQuantizer, weight, dtype, bits, 'weight', **kw, **extra)
            # learned bounds away from the initial -3 / 3
            for q in pair:
                q.lower.data.add_(torch.linspace(-0.5, 0.3, q.lower.numel()))
            _assert_daq_equal(*pair, weight)
    per_channel = dict(per_channel=True, channel_axis=1, num_channels=6)
    pair = _pair(DAQQuantizer, act, dtype, 4, 'activation', **per_channel)
    _assert_daq_equal(*pair, act)


@pytest.mark.parametrize('temperature', [2.0, 15.0])
def test_fused_daq_float32_gradients_as_close_to_float64_as_eager(temperature):
    """In float32 the eager sigmoid'(T) = (1 - p) p loses digits for a large
    T (1 - p ~ 3e-7 at T = 15); the kernel's is as accurate."""
    gen = torch.Generator().manual_seed(3)
    x = (0.1 * torch.randn(16, 8, 3, 3, generator=gen)).double()
    eager, fused = _pair(
        DAQQuantizer, x, torch.float64, 3, 'weight', temperature=temperature
    )
    upstream = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    exact = _quantizer_run(eager, x, upstream)  # float64 autograd
    errors = []
    for q in (eager, fused):
        q.float().zero_grad()
        run = _quantizer_run(q, x.float(), upstream.float())
        errors.append(
            [(a.double() - b).abs().max() for a, b in zip(run[1:], exact[1:])]
        )
    for eager_error, fused_error in zip(*errors):
        assert fused_error <= 2 * eager_error + 1e-6


def test_fused_daq_gradient_is_the_hand_derived_soft_path_gradient():
    """The kernel's backward, written out: dk/dt = (1 + 2c) p (1 - p) T
    (s0 + s1) / |s0 - s1| with p = sigmoid(T), matches autograd of the eager
    soft path (float64); t is x / step for lower = 0."""
    temperature, sigma, levels = 2.0, 2.0, 15
    q = DAQQuantizer(4, 'activation', temperature=temperature, fused=True).double()
    q.upper.data.fill_(3.0)
    q.initialized.fill_(1)
    q.sync_flags()
    t = torch.tensor([0.1, 0.5, 0.51, 0.9, 3.25, 7.75, 14.2], dtype=torch.float64)
    x = (t * 3.0 / levels).requires_grad_()
    q(x).sum().backward()
    r = t - t.floor()
    m0, m1 = torch.exp(-r), torch.exp(r - 1)
    far = math.exp(-1 / sigma**2)
    up = r > 0.5
    s0, s1 = torch.where(up, m0 * far, m0), torch.where(up, m1, m1 * far)
    c = 1 / math.expm1(temperature)
    p = 1 / (1 + math.exp(-temperature))
    dk_dt = (1 + 2 * c) * p * (1 - p) * temperature * (s0 + s1) / (s0 - s1).abs()
    # out = k / levels, t = x / step = x * levels / 3
    torch.testing.assert_close(x.grad, dk_dt / 3.0, rtol=1e-12, atol=0)


def test_fused_daq_special_values():
    # +-inf saturate with zero gradient, NaN stays NaN (the upper gradient
    # NaN, as eager), -0, levels exactly at r = 0.5 (rounds down) and at the
    # bounds
    eager, fused = _pair(DAQQuantizer, torch.ones(3), torch.float32, 2, 'activation')
    for q in (eager, fused):
        q.upper.data.fill_(3.0)  # step 1
    x = torch.tensor([0.5, 1.5, 2.5, 0.0, -0.0, 3.0, -1.0, 1e38, INF, -INF, 2.2])
    ref, got = _assert_daq_equal(eager, fused, x)
    assert got[0].tolist() == pytest.approx(
        [0.0, 1 / 3, 2 / 3, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 2 / 3]
    )
    assert (got[1][6:10] == 0).all()
    nan_x = torch.tensor([0.3, float('nan')])
    ref, got = _assert_daq_equal(eager, fused, nan_x)
    assert torch.isnan(got[0][1]) and got[1][1] == 0 and torch.isnan(got[2]).all()


def test_fused_daq_eager_where_the_kernel_does_not_apply(monkeypatch):
    """Eval mode (hard rounding, no soft gradient) and a sigma so large that
    the two scores can be equal (the eager soft rounding then divides by 0)
    run the eager path: the eager values bit for bit, no kernel call."""
    from mmcompress.quant.kernels import daq_n2uq

    def no_kernel(*args):
        raise AssertionError('the kernel ran')

    monkeypatch.setattr(daq_n2uq.FusedDAQQuantize, 'apply', no_kernel)
    assert not daq_n2uq.daq_kernel_applies(torch.float32, 2.0, 1e4)
    assert daq_n2uq.daq_kernel_applies(torch.float64, 2.0, 1e4)
    x = torch.randn(3, 4, 5).relu()
    for train, sigma in ((False, None), (True, 1e4)):
        pair = _pair(DAQQuantizer, x, torch.float32, 3, 'activation', sigma=sigma)
        upstream = torch.randn_like(x)
        runs = []
        for q in pair:
            q.train(train)
            runs.append(_quantizer_run(q, x, upstream))
        for r, g in zip(*runs):
            assert torch.equal(_bits(r), _bits(g))


# ---------------------------------------------------------------- N2UQ
def _assert_n2uq_equal(eager, fused, x, seed=1):
    """Output and input gradient bit for bit; start / a / scale1 / scale2
    gradients within the float summation error bound."""
    upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    upstream = upstream.to(x.dtype)
    ref = _quantizer_run(eager, x, upstream)
    got = _quantizer_run(fused, x, upstream)
    _assert_output_equal(ref[0], got[0])
    assert torch.equal(_bits(ref[1]), _bits(got[1]))
    eps = torch.finfo(x.dtype).eps
    for r, g in zip(ref[2:], got[2:]):
        finite = torch.isfinite(r)
        assert torch.equal(finite, torch.isfinite(g))
        # terms are at most |upstream| * scale2 * interval / width * |x|
        bound = 64 * eps * upstream.abs().sum() * (1 + x[torch.isfinite(x)].abs().max())
        assert ((g - r)[finite].abs() <= bound * 50).all(), (g - r).abs().max()
    return ref, got


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_n2uq_equals_eager(dtype):
    gen = torch.Generator().manual_seed(0)
    act = torch.randn(4, 6, 15, 17, generator=gen).to(dtype)
    for bits in (1, 2, 4, 8):
        for init in ('data', 'official'):
            eager, fused = _pair(N2UQActQuantizer, act, dtype, bits, init=init)
            for q in (eager, fused):  # uneven learned widths and a start
                n = q.a.numel()
                q.a.data.mul_(torch.linspace(0.5, 1.5, n, dtype=q.a.dtype))
                q.a.data[0] = 1e-4  # below eps: clamped
                q.start.data.fill_(-0.1)
            _assert_n2uq_equal(eager, fused, act)


def test_fused_n2uq_special_values_and_ties():
    eager, fused = _pair(
        N2UQActQuantizer, torch.ones(3), torch.float32, 2, init='official'
    )
    # official: start 0, widths 2/3, thresholds 1/3, 1, 5/3; x exactly at a
    # threshold stays below it, at a segment start enters the segment
    x = torch.tensor(
        [1 / 3, 1.0, 2 / 3, 4 / 3, 0.0, -0.0, 2.0, 2.5, -1.0, 1e38, INF, -INF, 0.9]
    )
    ref, got = _assert_n2uq_equal(eager, fused, x)
    assert got[0][:4].tolist() == pytest.approx([0.0, 2 / 3, 2 / 3, 4 / 3])
    assert (got[1][8:12] == 0).all()
    nan_x = torch.tensor([0.3, float('nan'), 1.2])
    ref, got = _assert_n2uq_equal(eager, fused, nan_x)
    assert torch.isnan(got[0][1]) and got[1][1] == 0


@pytest.mark.parametrize('name', ['daq', 'n2uq', 'daq_weight', 'n2uq_weight'])
def test_fused_daq_n2uq_gradients_independent_of_threads(name):
    """Several chunks of 16384 elements (weights: channels spanning chunks;
    below torch's 32768-element grain, so the eager weight statistics are
    computed in one piece): the same bits with 1 and 3 threads."""
    x = torch.randn(8, 16, 20, 20).relu()
    if name == 'daq':
        q = DAQQuantizer(4, 'activation', fused=True)
    elif name == 'n2uq':
        q = N2UQActQuantizer(4, fused=True)
    else:
        x = 0.1 * torch.randn(48, 64, 3, 3)
        if name == 'daq_weight':
            q = DAQQuantizer(4, 'weight', per_channel=True, num_channels=48, fused=True)
            q.lower.data.add_(torch.linspace(-0.5, 0.3, 48).reshape(q.lower.shape))
        else:
            q = N2UQWeightQuantizer(4, fused=True)
    upstream = torch.randn_like(x)
    q(x)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            q.zero_grad()
            results.append(_quantizer_run(q, x, upstream))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(_bits(a), _bits(b))


def test_fused_n2uq_infinite_width_takes_the_general_path():
    """An infinite segment width (or a non-finite range) makes the G-STE path
    non-finite for finite inputs, so the forward cannot use the threshold
    count alone: the kernel's general path gives the eager NaNs and values."""
    x = torch.tensor([-1.0, 0.1, 0.4, 0.9, 1.3, 2.5, 40.0, INF, -INF])
    eager, fused = _pair(
        N2UQActQuantizer, torch.ones(3), torch.float32, 2, init='official'
    )
    for q in (eager, fused):
        q.a.data[1] = INF  # segments 0.67 and inf wide: high = inf
    ref, got = _assert_n2uq_equal(eager, fused, x)
    assert torch.isnan(got[0]).any() and not torch.isnan(got[0]).all()


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_n2uq_weight_equals_eager_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(0)
    conv = 0.1 * torch.randn(12, 6, 3, 3, generator=gen)
    conv[0] = 0.0  # a zero channel (sf = 1e-12)
    conv[1, 0, 0, 0] = INF
    conv[2, 1, 1, 1] = -INF
    conv[3, 2, 2, 2] = float('nan')
    conv[4, 0, 0, :] = torch.tensor([-0.0, 1.0, -1.0])
    cases = [(conv, {}), (0.1 * torch.randn(40, 700, generator=gen), {})]
    cases.append((0.1 * torch.randn(6, 12, 3, 3, generator=gen), dict(channel_axis=1)))
    for data, kwargs in cases:
        data = data.to(dtype)
        upstream = torch.randn(data.shape, generator=gen).to(dtype)
        for bits in (1, 2, 4, 8):
            runs = []
            for fused in (False, True):
                q = N2UQWeightQuantizer(bits, fused=fused, **kwargs)
                runs.append(_quantizer_run(q, data, upstream))
            _assert_output_equal(runs[0][0], runs[1][0])
            assert torch.equal(_bits(runs[0][1]), _bits(runs[1][1]))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_channel_abs_mean_equals_torch_bit_for_bit(dtype):
    """N2UQ's weight statistic ``x.abs().mean(dims 1.., keepdim=True)`` in one
    pass: rows shorter than a vector (torch's scalar sum), with and without a
    tail after the last vector and the last group of four, long rows; values
    over a wide range of magnitudes; 1 and 3 threads."""
    from mmcompress.quant.kernels.daq_n2uq import fused_channel_abs_mean

    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (8, 1, 3, 3), (16, 64, 3, 3), (6, 17), (3, 16)]
    shapes += [(5, 33, 1, 1), (2, 1, 1), (64, 512, 3, 3), (3, 300001)]
    threads = torch.get_num_threads()
    try:
        for shape in shapes:
            magnitude = torch.randn(shape, generator=gen, dtype=torch.float64).exp()
            x = torch.randn(shape, generator=gen, dtype=torch.float64) * magnitude
            x = x.to(dtype)
            ref = x.abs().mean(dim=list(range(1, x.dim())), keepdim=True)
            for n in (1, 3):
                torch.set_num_threads(n)
                got = fused_channel_abs_mean(x)
                assert got is not None, shape
                assert torch.equal(_bits(got), _bits(ref)), (shape, n)
    finally:
        torch.set_num_threads(threads)


def test_channel_abs_mean_leaves_other_inputs_to_eager():
    """None (the caller's eager ``stat_of_finite`` runs) for a non-finite
    mean, one channel (torch splits a single-output sum across threads), a
    non-contiguous, 1-D or half-precision tensor, and without a lane count
    that reproduces torch's sum."""
    from mmcompress.quant.kernels import daq_n2uq

    x = torch.randn(6, 4, 3, 3)
    assert daq_n2uq.fused_channel_abs_mean(x) is not None
    inf = x.clone()
    inf[2, 0, 0, 0] = INF
    for bad in (inf, x[:1], x.transpose(0, 1), x[:, 0, 0, 0], x.half()):
        assert daq_n2uq.fused_channel_abs_mean(bad) is None
    daq_n2uq._SUM_LANES[torch.float32] = None
    try:
        assert daq_n2uq.fused_channel_abs_mean(x) is None
        # the quantizer then takes the eager statistic: the same values
        fused, eager = N2UQWeightQuantizer(4, fused=True), N2UQWeightQuantizer(4)
        assert torch.equal(fused(x), eager(x))
    finally:
        daq_n2uq._SUM_LANES.pop(torch.float32)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_std_mean_equals_torch_bit_for_bit(dtype, kernel):
    """DAQ's weight standardization ``(x.mean(), x.std())`` with one mean
    pass: below and above torch's 32768-element grain (where its ``std``
    splits the squared deviations into per-thread chunks), element counts not
    divisible by the thread count, 1, 2 and 3 threads."""
    from mmcompress.quant.kernels.daq_n2uq import fused_std_mean

    gen = torch.Generator().manual_seed(0)
    shapes = [(2,), (7, 3), (64, 64, 3, 3), (3, 32768), (32769,), (100003,)]
    threads = torch.get_num_threads()
    try:
        for shape in shapes:
            x = (0.05 * torch.randn(shape, generator=gen) + 0.01).to(dtype)
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                mean, std = kernel.std_mean_all(x)
                assert torch.equal(_bits(mean), _bits(x.mean())), (shape, n)
                assert torch.equal(_bits(std), _bits(x.std())), (shape, n)
                got = fused_std_mean(x)
                assert got is not None and torch.equal(got[1], x.std())
    finally:
        torch.set_num_threads(threads)


def test_std_mean_leaves_other_inputs_to_eager(monkeypatch, kernel):
    """None (the eager statistics run, same DAQ output) for a non-finite
    statistic, a non-contiguous or one-element tensor, and for every call of
    an element count / dtype / thread count whose first call did not give
    torch's bits."""
    from mmcompress.quant.kernels import daq_n2uq

    x = 0.1 * torch.randn(16, 8, 3, 3)
    inf = x.clone()
    inf[0, 0, 0, 0] = INF
    for bad in (inf, x.transpose(0, 1), x[:1, :1, :1, :1]):
        assert daq_n2uq.fused_std_mean(bad) is None

    class OffByOne:
        def __getattr__(self, name):
            return getattr(kernel, name)

        def std_mean_all(self, t):
            mean, std = kernel.std_mean_all(t)
            return mean, torch.nextafter(std, torch.full_like(std, INF))

    y = 0.1 * torch.randn(24, 8, 3, 3)
    monkeypatch.setitem(kernels._STATE, 'ops', OffByOne())
    monkeypatch.setattr(daq_n2uq, '_STD_MEAN_CHECKED', {})
    assert daq_n2uq.fused_std_mean(y) is None
    assert daq_n2uq._STD_MEAN_CHECKED == {
        (y.numel(), torch.float32, torch.get_num_threads()): False
    }
    eager = DAQQuantizer(4, 'weight')
    fused = DAQQuantizer(4, 'weight', fused=True)
    assert torch.equal(fused(y), eager(y))
