"""LBT gradient quantization: levels, clipping, stochastic rounding, the gamma
controller against a hand simulation, layer gradients from the quantized
error, resume."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmcompress.quant import LBTGradQuantizer, QuantLinear, quantize_model
from mmcompress.quant.grad import (
    LBTIntervalInitHook,
    expected_sr_error,
    lbt_target,
    quantize_gradient,
)


def _backward(quantizer, grad):
    """Run ``grad`` back through the quantizer; returns the quantized error."""
    x = torch.zeros_like(grad, requires_grad=True)
    quantizer(x).backward(grad)
    return x.grad


@pytest.mark.parametrize('bits', [2, 4, 8])
def test_levels_are_symmetric_and_clipped(bits):
    g = torch.linspace(-3, 3, 10001)
    c = torch.tensor(2.0)
    g_q = quantize_gradient(g, c, bits, torch.zeros_like(g))
    levels = torch.unique(g_q)
    step = 2 * 2.0 / (2**bits - 2)
    expected = -2.0 + step * torch.arange(2**bits - 1)
    assert len(levels) == 2**bits - 1
    assert torch.allclose(levels, expected, atol=1e-6)
    assert (levels == 0).any() or torch.isclose(
        levels.abs().min(), torch.tensor(0.0), atol=1e-6
    )
    assert g_q.max() == pytest.approx(2.0) and g_q.min() == pytest.approx(-2.0)
    inside = g.abs() <= 2.0
    # round to nearest with zero noise: within half a step inside the clip
    assert ((g_q - g)[inside].abs() <= step / 2 + 1e-6).all()


def test_clip_is_gamma_times_max():
    q = LBTGradQuantizer(bits=4, interval='fixed', gamma=0.5)
    g = torch.tensor([4.0, -4.0, 1.0, -0.3])
    g_q = _backward(q, g)
    assert g_q.abs().max() == pytest.approx(2.0)  # c = 0.5 * max|g| = 2
    assert g_q[0] == pytest.approx(2.0) and g_q[1] == pytest.approx(-2.0)
    assert int(q.num_backward) == 1


def test_stochastic_rounding_is_unbiased():
    """Each element's rounding is a Bernoulli over two levels one step apart
    (variance <= step^2 / 4), so the mean of n independent draws has a
    standard deviation <= step / (2 sqrt(n)); 5 of those bound every one of
    the 64 element means (two-sided normal tail 6e-7 each)."""
    n, d, bits = 20000, 64, 4
    g = torch.linspace(-0.99, 0.97, d)
    q = LBTGradQuantizer(bits=bits, interval='fixed', gamma=1.0, seed=3)
    batch = g.repeat(n, 1)
    batch[0, 0] = 1.0  # max|g| = 1: c = 1, step = 2 / 14
    g_q = _backward(q, batch)[1:]
    step = 2 / (2**bits - 2)
    bound = 5 * step / (2 * (n - 1) ** 0.5)
    assert (g_q.mean(0) - g).abs().max() < bound
    # and the draws are not round-to-nearest (which is biased by up to step/2)
    nearest = quantize_gradient(g, torch.tensor(1.0), bits, torch.zeros(d))
    assert (nearest - g).abs().max() > 10 * bound


def test_expected_sr_error_matches_monte_carlo():
    g = torch.randn(500, generator=torch.Generator().manual_seed(0))
    c = torch.tensor(1.5)
    gen = torch.Generator().manual_seed(1)
    draws = [
        (
            (quantize_gradient(g, c, 3, torch.rand(500, generator=gen) - 0.5) - g) ** 2
        ).sum()
        for _ in range(2000)
    ]
    mc = torch.stack(draws)
    expected = expected_sr_error(g, c, 3)
    # 5 standard errors of the Monte-Carlo mean
    assert (mc.mean() - expected).abs() < 5 * mc.std() / 2000**0.5


def test_mse_interval_picks_the_grid_minimum():
    g = torch.randn(4000, generator=torch.Generator().manual_seed(2)) ** 3
    q = LBTGradQuantizer(bits=4, interval='mse', mse_grid=[1.0, 0.5, 0.2, 0.05])
    _backward(q, g)
    errors = {
        gamma: float(expected_sr_error(g, gamma * g.abs().max(), 4))
        for gamma in (1.0, 0.5, 0.2, 0.05)
    }
    assert float(q.gamma) == pytest.approx(min(errors, key=errors.get))


def test_walk_down_by_hand():
    """2 bits: target 1e-3 / 3. g = [1, 0.1]: gamma = 1 clips nothing (m = 0,
    step down), gamma = 0.999 clips 1 of 2: m = 0.001 * 0.5 = 5e-4 > target,
    the original's last step goes back up: gamma = 1."""
    q = LBTGradQuantizer(bits=2)
    assert q.needs_init
    _backward(q, torch.tensor([1.0, 0.1]))
    assert float(q.gamma) == pytest.approx(1.0)
    assert int(q.initialized) == 1 and not q.needs_init
    # 1000 elements 1, 0.999, ..., 0.001, 2 bits: gamma = 1 - 0.001 k clips
    # about the k largest; the EMA of the clipped fraction first exceeds
    # 1e-3 / 3 at k = 26 (float64 loop below), then the last step goes up
    g = torch.arange(1000, 0, -1, dtype=torch.float64) / 1000
    m, k = 0.0, 0
    while True:
        m = 0.999 * m + 0.001 * float((g > (1 - 0.001 * k) * g.max()).double().mean())
        if m > 1e-3 / 3:
            break
        k += 1
    assert k == 26
    q = LBTGradQuantizer(bits=2)
    _backward(q, g.float())
    assert float(q.gamma) == pytest.approx(1 - 0.001 * (k - 1), abs=1e-6)


def test_first_backward_quantizes_with_gamma_one():
    """As the original: the initialisation backward is quantized with the
    starting gamma = 1 (the walk-down sets the gamma of the next backward)."""
    g = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    q = LBTGradQuantizer(bits=4)
    reference = copy.deepcopy(q)
    reference.interval = 'fixed'  # gamma = 1, same noise
    assert torch.equal(_backward(q, g), _backward(reference, g))
    assert float(q.gamma) < 1.0


def _simulate(grads, bits):
    """The LBT rule in numpy float32, written from the original
    update_interval: walk-down on the first gradient (gamma += 1e-3 sign(m -
    target) until the sign is positive, that last step included, then clip),
    then gamma <- clip(gamma + 1e-3 sign(r - target)) with r measured at the
    gamma used for quantizing."""
    target = 1e-3 / (2**bits - 1)
    trajectory = []
    first = np.abs(grads[0])
    g_max = first.max()
    gamma, ema, sign = 1.0, 0.0, -1.0
    while sign <= 0:
        r = np.mean(first > np.float32(gamma) * g_max)
        ema = 0.999 * ema + 0.001 * r
        sign = np.sign(ema - target)
        gamma += 1e-3 * sign
    gamma = np.float32(np.clip(gamma, 1e-3, 1.0))
    trajectory.append(float(gamma))
    for g in grads[1:]:
        a = np.abs(g)
        r = np.float32(np.mean(a > gamma * a.max()))
        gamma = np.float32(
            np.clip(gamma + np.float32(1e-3) * np.sign(r - target), 1e-3, 1.0)
        )
        trajectory.append(float(gamma))
    return trajectory


@pytest.mark.parametrize('bits', [4, 8])
def test_gamma_update_and_initialisation_match_simulation(bits):
    rng = np.random.default_rng(0)
    # heavy-tailed errors (Student t, 3 dof) as in backpropagation
    grads = [rng.standard_t(3, size=20000).astype(np.float32) for _ in range(8)]
    q = LBTGradQuantizer(bits=bits)
    got = []
    for g in grads:
        _backward(q, torch.from_numpy(g))
        got.append(float(q.gamma))
    expected = _simulate(grads, bits)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got[0] < 1.0  # the walk-down moved


def test_update_happens_after_quantizing():
    """The backward at step t quantizes with gamma_t: a fixed first gamma."""
    q = LBTGradQuantizer(bits=4)
    _backward(q, torch.randn(1000))
    gamma_t = float(q.gamma)
    g = torch.randn(1000)
    g[0] = 10.0
    reference = copy.deepcopy(q)
    reference.interval = 'fixed'  # same noise, same gamma, no update
    g_q = _backward(q, g)
    assert torch.equal(g_q, _backward(reference, g))
    assert float(q.gamma) != gamma_t
    assert g_q.abs().max() == pytest.approx(gamma_t * 10.0, rel=1e-6)


def test_nonfinite_gradient_is_skipped_and_counted():
    q = LBTGradQuantizer(bits=4)
    _backward(q, torch.randn(100))
    gamma = float(q.gamma)
    for bad in (float('nan'), float('inf')):
        g = torch.randn(100)
        g[3] = bad
        out = _backward(q, g)
        assert torch.equal(out[~torch.isnan(g)], g[~torch.isnan(g)])
        assert float(q.gamma) == gamma
    assert int(q.num_nonfinite) == 2
    # before initialisation too: the walk-down waits for a finite gradient
    fresh = LBTGradQuantizer(bits=4)
    _backward(fresh, torch.full((10,), float('nan')))
    assert fresh.needs_init and int(fresh.num_nonfinite) == 1


def test_linear_gradients_come_from_the_quantized_error():
    torch.manual_seed(0)
    float_layer = nn.Linear(6, 5)
    layer = QuantLinear.from_float(
        float_layer,
        grad_quantizer=dict(
            type='LBTGradQuantizer', bits=3, interval='fixed', gamma=0.7
        ),
    )
    x = torch.randn(4, 6, requires_grad=True)
    g = torch.randn(4, 5)
    twin = copy.deepcopy(layer.grad_quantizer)  # same noise stream and count
    layer(x).backward(g)
    g_q = twin.quantize_backward(g)
    assert not torch.equal(g_q, g)
    assert torch.allclose(layer.weight.grad, g_q.t() @ x.detach(), atol=1e-6)
    assert torch.allclose(x.grad, g_q @ layer.weight.detach(), atol=1e-6)
    assert torch.allclose(layer.bias.grad, g_q.sum(0), atol=1e-6)


def test_inplace_relu_after_the_layer_keeps_the_quantized_error():
    """RetinaNet's head: ReLU(inplace=True) right on a quantized conv output."""
    torch.manual_seed(0)
    layer = QuantLinear.from_float(
        nn.Linear(6, 5),
        grad_quantizer=dict(
            type='LBTGradQuantizer', bits=3, interval='fixed', gamma=0.7
        ),
    )
    x = torch.randn(4, 6, requires_grad=True)
    g = torch.randn(4, 5)
    twin = copy.deepcopy(layer.grad_quantizer)
    y = layer(x)
    mask = (y > 0).float()
    nn.ReLU(inplace=True)(y).backward(g)
    g_q = twin.quantize_backward(g * mask)
    assert torch.allclose(layer.weight.grad, g_q.t() @ x.detach(), atol=1e-6)


def test_conv_gradients_use_quantized_weights_inputs_and_error():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))
    quantize_model(
        model,
        w=dict(type='LSQQuantizer', bits=4, signed=True),
        a=dict(type='LSQQuantizer', bits=4),
        g=dict(type='LBTGradQuantizer', bits=4),
        keep_output_float=False,
    )
    layer = model[1]
    x = torch.randn(2, 4, 8, 8)
    layer(x)  # quantizers initialise
    twin_q = copy.deepcopy(layer.grad_quantizer)
    plain = copy.deepcopy(layer)
    plain.grad_quantizer = None
    g = torch.randn(2, 4, 6, 6)
    layer(x).backward(g)
    plain(x).backward(twin_q.quantize_backward(g))
    assert torch.allclose(layer.weight.grad, plain.weight.grad, atol=1e-6)
    for p, p_ref in zip(
        layer.act_quantizer.parameters(), plain.act_quantizer.parameters()
    ):
        assert torch.allclose(p.grad, p_ref.grad, atol=1e-6)


def _train(model, steps, start=0):
    torch.manual_seed(1)
    gammas = []
    for step in range(start, steps):
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(8, 3, 10, 10, generator=gen)
        model.zero_grad()
        model(x).pow(2).mean().backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.01 * p.grad
        gammas.append(
            [float(q.gamma) for q in model.modules() if isinstance(q, LBTGradQuantizer)]
        )
    return gammas


def _lbt_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)
    )
    return quantize_model(
        model,
        w=dict(type='LSQQuantizer', bits=4, signed=True),
        a=dict(type='LSQQuantizer', bits=4),
        g=dict(type='LBTGradQuantizer', bits=4),
        keep_output_float=False,
    )


def test_resume_gives_identical_gamma_trajectory():
    full = _train(_lbt_model(), 6)
    first = _lbt_model()
    assert _train(first, 3) == full[:3]
    state = copy.deepcopy(first.state_dict())
    assert {'2.grad_quantizer.gamma', '2.grad_quantizer.num_backward'} <= set(state)
    resumed = _lbt_model()
    resumed.load_state_dict(state)
    assert _train(resumed, 6, start=3) == full[3:]
    assert len({tuple(g) for g in full}) > 1  # gamma moves


def test_layers_get_distinct_noise_streams():
    model = _lbt_model()
    streams = [q.stream for q in model.modules() if isinstance(q, LBTGradQuantizer)]
    assert len(streams) == 2 and len(set(streams)) == 2


class _Wrapper:
    def __init__(self):
        self.steps = 0

    def step(self):
        self.steps += 1


def _runner(model):
    logs = []
    logger = SimpleNamespace(info=logs.append, warning=logs.append)
    return SimpleNamespace(
        model=model, optim_wrapper=_Wrapper(), logger=logger, iter=0, _resume=False
    ), logs


def test_hook_skips_only_the_initialisation_step():
    model = _lbt_model()
    runner, logs = _runner(model)
    hook = LBTIntervalInitHook()
    hook.before_train(runner)
    for _ in range(3):
        hook.before_train_iter(runner, 0)
        model(torch.randn(2, 3, 10, 10)).sum().backward()
        runner.optim_wrapper.step()
        hook.after_train_iter(runner, 0)
    assert runner.optim_wrapper.steps == 2
    assert any('optimizer step skipped' in str(m) for m in logs)
    assert lbt_target(4) == pytest.approx(1e-3 / 15)


@pytest.mark.slow
def test_train_and_resume_through_tools_train(tmp_path):
    """4/4/4 LBT config: 4 iterations through our tools/train.py, then the
    stock mmpretrain tools/train.py resumes from iteration 2; gamma, the
    losses and the noise counters at iteration 4 are identical."""
    import os.path as osp
    import shutil

    from mmengine.config import Config

    from mmcompress.testing import shorten_schedule, shrink_data, stock_tool
    from tests.e2e.runs import OUR_TRAIN, REPO, run_tool, train_losses

    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'lbt_w4a4g4_fmnist.py')
    )
    cfg.load_from = None  # quantizers and gammas initialise from the batches
    shrink_data(cfg, 8, dict(train=64, val=50))
    dataset = cfg.train_dataloader.dataset
    dataset.pipeline = [
        t for t in dataset.pipeline if not t['type'].startswith('Random')
    ]
    shorten_schedule(
        cfg, iters=4, log_interval=1, param_scheduler=[], interval=2, max_keep_ckpts=-1
    )
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0)
    config = str(tmp_path / 'lbt_small.py')
    cfg.dump(config)
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    proc = run_tool(OUR_TRAIN, [config, '--work-dir', full])
    assert 'optimizer step skipped' in proc.stdout + proc.stderr
    shutil.copytree(
        full,
        resumed,
        ignore=lambda d, names: [
            n for n in names if n != 'iter_2.pth' and not n.endswith('.py')
        ],
    )
    with open(osp.join(resumed, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(resumed, 'iter_2.pth'))
    run_tool(stock_tool('mmpretrain'), [config, '--work-dir', resumed, '--resume'])

    def controller(path, it):
        state = torch.load(
            osp.join(path, f'iter_{it}.pth'), map_location='cpu', weights_only=False
        )['state_dict']
        return {k: v for k, v in state.items() if '.grad_quantizer.' in k}

    mid, end, end_resumed = (
        controller(full, 2),
        controller(full, 4),
        controller(resumed, 4),
    )
    gammas = [k for k in end if k.endswith('.gamma')]
    assert len(gammas) > 5
    assert any(float(mid[k]) != float(end[k]) for k in gammas)  # they moved
    for key, value in end.items():
        assert torch.equal(end_resumed[key], value), key
    before, after = train_losses(full), train_losses(resumed)
    for step, loss in after.items():
        assert loss == pytest.approx(before[step], rel=1e-5, abs=1e-6)


def test_kd_composition_quantizes_student_errors_only():
    """lbt_w4a4g4_kd_fmnist.py: the student's quantized layers carry gradient
    quantizers that initialise from the (CE + KD) error; the float teacher has
    none and gets no gradient."""
    import os.path as osp

    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    from tests.e2e.runs import REPO

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'lbt_w4a4g4_kd_fmnist.py')
    )
    cfg.model.teacher.checkpoint = None
    cfg.model.data_preprocessor = cfg.data_preprocessor
    model = MODELS.build(cfg.model)
    student_q = [q for q in model.student.modules() if isinstance(q, LBTGradQuantizer)]
    assert student_q and not any(
        isinstance(q, LBTGradQuantizer) for q in model._teachers['teacher'].modules()
    )
    from mmpretrain.structures import DataSample

    data = dict(
        inputs=torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8),
        data_samples=[DataSample().set_gt_label(i) for i in range(4)],
    )
    model.train()
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    assert any('kd' in k for k in losses)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(not q.needs_init and 0 < float(q.gamma) < 1 for q in student_q)
    assert all(p.grad is None for p in model._teachers['teacher'].parameters())


def test_forward_and_onnx_export_unchanged_by_gradient_quantizers():
    from mmcompress.quant.export import export_onnx

    def build(g):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(512, 4),
        )
        return quantize_model(
            model,
            w=dict(type='LSQQuantizer', bits=8, signed=True),
            a=dict(type='LSQQuantizer', bits=8),
            g=g,
        )

    x = torch.randn(4, 3, 12, 12)
    with_g = build(dict(type='LBTGradQuantizer', bits=8))
    without = build(None)
    assert torch.equal(with_g(x), without(x))  # training mode, initialises
    with_g.eval()
    without.eval()
    example = torch.randn(1, 3, 12, 12)
    assert export_onnx(with_g, example) == export_onnx(without, example)


def test_all_zero_error_leaves_gamma_and_the_walk_down_pending():
    q = LBTGradQuantizer(bits=4)
    assert torch.equal(_backward(q, torch.zeros(50)), torch.zeros(50))
    assert q.needs_init and float(q.gamma) == 1.0
    _backward(q, torch.randn(50))
    gamma = float(q.gamma)
    assert not q.needs_init
    _backward(q, torch.zeros(50))
    assert float(q.gamma) == gamma and int(q.num_nonfinite) == 0


def test_hook_skips_once_even_if_a_layer_initialises_later():
    model = _lbt_model()
    runner, logs = _runner(model)
    hook = LBTIntervalInitHook()
    late = model[2].grad_quantizer
    hook.before_train_iter(runner, 0)
    late.initialized.fill_(0)  # as if its first error had been all zero
    late._ready = None
    runner.optim_wrapper.step()
    hook.after_train_iter(runner, 0)
    hook.before_train_iter(runner, 1)
    runner.optim_wrapper.step()
    hook.after_train_iter(runner, 1)
    assert runner.optim_wrapper.steps == 1 and late.needs_init


def test_hook_does_not_skip_when_the_controller_is_running():
    """A resumed run with one layer still waiting for its walk-down takes
    every step (the uninterrupted run skipped only its first)."""
    model = _lbt_model()
    model(torch.randn(2, 3, 10, 10)).sum().backward()
    model[2].grad_quantizer.initialized.fill_(0)
    model[2].grad_quantizer._ready = None
    runner, _ = _runner(model)
    hook = LBTIntervalInitHook()
    hook.before_train_iter(runner, 0)
    runner.optim_wrapper.step()
    hook.after_train_iter(runner, 0)
    assert runner.optim_wrapper.steps == 1
