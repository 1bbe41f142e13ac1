"""Unified Normalization: forward / backward against the formulas of the
official code (written out here step by step), RMS-norm equivalence while
t <= window, pad mask, counters and the runner hook."""

import math
from types import SimpleNamespace

import pytest
import torch

from mmcompress.models.norms import UN, UNIterHook, set_un_iters

EPS = 1e-5


def rms_norm(x, weight, bias):
    """Batch RMS-norm over every token, per channel (autograd reference)."""
    tokens = x.reshape(-1, x.shape[-1])
    var = tokens.pow(2).mean(dim=0)
    return (weight * tokens / (var + EPS).sqrt() + bias).reshape(x.shape)


class Reference:
    """The spec's UN formulas, one step at a time, on plain tensors."""

    def __init__(self, c, win, warmup, filtration, momentum=0.9):
        self.win, self.warmup, self.filt, self.m = win, warmup, filtration, momentum
        self.rv, self.ema = torch.ones(c), torch.zeros(c)
        self.bx2, self.bgz = torch.zeros(win, c), torch.zeros(win, c)
        self.t = 0
        self.skips = 0

    def step(self, x, w, b, gy):
        self.t += 1
        t, win = self.t, self.win
        x2 = (x**2).mean(0)
        rec = self.bx2.sqrt().flatten().var()
        self.bx2[t % win] = x2
        skip = win <= 1
        if self.filt and t >= self.warmup:
            am = self.bx2.mean(0)
            gm = self.bx2.log().mean(0).exp()
            if ((am - gm) > rec * win).any():
                self.bx2[t % win] = self.rv
                skip, self.skips = True, self.skips + 1
        smooth = not (t <= win or t < self.warmup or skip)
        var = self.bx2.log().mean(0).exp() if smooth else x2
        if t <= max(1000, self.warmup) or skip:
            r = torch.ones_like(var)
        else:
            r = ((var + EPS).sqrt() / (self.rv + EPS).sqrt()).clamp(0.2, 5)
        z = x / (var + EPS).sqrt()
        self.rv = self.m * self.rv + (1 - self.m) * var
        y = w * z + b
        g = gy * w * r
        gz = (g * z).mean(0)
        self.bgz[t % win] = self.ema if skip else gz
        mean_gz = self.bgz.mean(0) if smooth else gz
        self.ema = self.m * self.ema + (1 - self.m) * mean_gz
        centre = mean_gz if skip else self.ema
        dx = (g - centre * z) / (var + EPS).sqrt()
        return y, dx, (gy * r * z).sum(0), gy.sum(0)


def _run(layer, x, gy):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    y.backward(gy)
    return y.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


def test_un_forward_and_backward_match_the_spec_formulas_over_steps():
    torch.manual_seed(0)
    c, win = 6, 3
    layer = UN(c, window_size=win, warmup_iters=2, outlier_filtration=True)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(c) + 0.5)
        layer.bias.copy_(torch.randn(c))
    ref = Reference(c, win, warmup=2, filtration=True)
    for step in range(12):
        # step 7 is an outlier batch (scale 30): filtration must skip it
        scale = 30.0 if step == 7 else 1.0 + 0.1 * step
        x = torch.randn(2, 5, c) * scale
        gy = torch.randn(2, 5, c)
        layer.weight.grad = layer.bias.grad = None
        y, dx, dw, db = _run(layer, x, gy)
        ry, rdx, rdw, rdb = ref.step(
            x.reshape(-1, c),
            layer.weight.detach(),
            layer.bias.detach(),
            gy.reshape(-1, c),
        )
        torch.testing.assert_close(y.reshape(-1, c), ry, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dx.reshape(-1, c), rdx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dw, rdw, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(db, rdb)
    assert int(layer.iters) == 12
    assert ref.skips >= 1 and int(layer.skip_counter) == ref.skips
    torch.testing.assert_close(layer.running_var, ref.rv)
    torch.testing.assert_close(layer.ema_gz, ref.ema)


def test_un_gradient_compensation_r_after_iteration_1000():
    """r = sqrt(var)/sqrt(running_var), clamped to [1/5, 5], once t > 1000."""
    torch.manual_seed(1)
    c = 4
    layer = UN(c, window_size=2, warmup_iters=0)
    ref = Reference(c, 2, warmup=0, filtration=False)
    for _ in range(3):  # fill the windows
        x, gy = torch.randn(8, c), torch.randn(8, c)
        _run(layer, x, gy)
        ref.step(x, layer.weight.detach(), layer.bias.detach(), gy)
    set_un_iters(layer, 1000)
    ref.t = 1000
    layer.running_var.mul_(40.0)  # r = 1/sqrt(40) -> clamped to 1/5
    ref.rv = ref.rv * 40.0
    x, gy = torch.randn(8, c), torch.randn(8, c)
    layer.weight.grad = layer.bias.grad = None
    _, dx, dw, _ = _run(layer, x, gy)
    _, rdx, rdw, _ = ref.step(x, layer.weight.detach(), layer.bias.detach(), gy)
    torch.testing.assert_close(dx, rdx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dw, rdw, rtol=1e-5, atol=1e-6)
    # dweight carries r = 1/5 while dbias does not
    y_z = (x / ((x**2).mean(0) + EPS).sqrt()).detach()
    assert not torch.allclose(dw, (gy * y_z).sum(0), rtol=0.1)


@pytest.mark.parametrize('steps', [1, 3])
def test_un_backward_is_rms_norm_autograd_while_t_within_window_without_ema(steps):
    """With ``momentum=0`` (ema_gz = the batch mean(g*z)) or a window of 1
    (every step skipped), the custom backward is the exact RMS-norm gradient
    for t <= window."""
    torch.manual_seed(2)
    c = 5
    for layer in (UN(c, window_size=3, momentum=0.0), UN(c, window_size=1)):
        for _ in range(steps):
            x, gy = torch.randn(3, 4, c), torch.randn(3, 4, c)
            layer.weight.grad = layer.bias.grad = None
            with torch.no_grad():
                layer.weight.copy_(torch.rand(c) + 0.5)
            y, dx, dw, db = _run(layer, x, gy)
            xr = x.clone().requires_grad_(True)
            w = layer.weight.detach().clone().requires_grad_(True)
            b = layer.bias.detach().clone().requires_grad_(True)
            yr = rms_norm(xr, w, b)
            yr.backward(gy)
            torch.testing.assert_close(y, yr.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(dx, xr.grad, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(dw, w.grad, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(db, b.grad)


def test_un_default_momentum_backward_differs_from_rms_norm_at_t1():
    """Official code, momentum 0.9, t = 1: dx = (g - 0.1 * mean(g z) z) / s,
    not the RMS-norm gradient (g - mean(g z) z) / s."""
    torch.manual_seed(3)
    layer = UN(4)
    x, gy = torch.randn(10, 4), torch.randn(10, 4)
    _, dx, _, _ = _run(layer, x, gy)
    s = ((x**2).mean(0) + EPS).sqrt()
    z = x / s
    expected = (gy - 0.1 * (gy * z).mean(0) * z) / s
    torch.testing.assert_close(dx, expected, rtol=1e-5, atol=1e-6)


def test_un_pad_tokens_are_left_out_of_the_statistics():
    torch.manual_seed(4)
    x = torch.randn(2, 5, 3)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    garbage = x.clone()
    garbage[pad] = 1e3
    layer = UN(3)
    y = layer(garbage, pad_mask=pad)
    x2 = (x[~pad] ** 2).mean(0)
    expected = garbage / (x2 + EPS).sqrt()  # pads normalised too
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(layer.buffer_x2[1], x2)


def test_un_eval_is_the_running_var_affine_and_keeps_the_counter():
    layer = UN(3).eval()
    layer.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    layer.weight.data.fill_(2.0)
    layer.bias.data.fill_(1.0)
    x = torch.ones(1, 2, 3)
    y = layer(x)
    expected = (
        torch.tensor(
            [2 / math.sqrt(4 + EPS), 2 / math.sqrt(1 + EPS), 2 / math.sqrt(0.25 + EPS)]
        )
        + 1.0
    )
    torch.testing.assert_close(y[0, 0], expected)
    assert int(layer.iters) == 0


def test_un_step_counter_ignores_no_grad_forwards_and_keeps_iters():
    """counter='step': a teacher / EMA copy in train mode under no_grad
    normalises with its batch statistics and touches no buffer."""
    layer = UN(3, counter='step')
    set_un_iters(layer, 5)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(4, 3) * 3
    with torch.no_grad():
        y = layer(x)
    torch.testing.assert_close(y, x / ((x**2).mean(0) + EPS).sqrt())
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key
    layer(x).sum().backward()  # a training forward: iters stays (set outside)
    assert int(layer.iters) == 5
    assert not torch.equal(layer.running_var, before['running_var'])


def test_un_forward_counter_counts_every_training_forward():
    layer = UN(3)
    with torch.no_grad():
        layer(torch.randn(2, 3))
    layer(torch.randn(2, 3))
    layer.eval()(torch.randn(2, 3))
    assert int(layer.iters) == 2


def _runner(model, iter_=0, accumulate=1, resume=False):
    logs = []
    logger = SimpleNamespace(info=logs.append, warning=logs.append)
    wrapper = SimpleNamespace(_accumulative_counts=accumulate)
    return SimpleNamespace(
        model=model,
        iter=iter_,
        optim_wrapper=wrapper,
        _resume=resume,
        logger=logger,
        logs=logs,
    )


def test_un_iter_hook_counts_optimizer_steps_under_accumulation():
    model = torch.nn.Sequential(UN(3, counter='step'), UN(3))
    set_un_iters(model, 7)
    hook = UNIterHook()
    runner = _runner(model, accumulate=2)
    hook.before_train(runner)
    seen = []
    for it in range(5):
        runner.iter = it
        hook.before_train_iter(runner, it)
        seen.append(int(model[0].iters))
    assert seen == [8, 8, 9, 9, 10]
    assert int(model[1].iters) == 7  # counter='forward' layers left alone


def test_un_iter_hook_resets_on_fine_tune_but_not_on_resume():
    model = torch.nn.Sequential(UN(3))
    set_un_iters(model, 4000)
    UNIterHook(reset_iters=True).before_train(_runner(model, resume=True))
    assert int(model[0].iters) == 4000
    runner = _runner(model)
    UNIterHook(reset_iters=True).before_train(runner)
    assert int(model[0].iters) == 0
    assert 'iters of 1 UN layers reset' in runner.logs[0]


def test_un_norm_cfg_builds_un_in_an_mmpretrain_vit():
    from mmpretrain.models import VisionTransformer

    vit = VisionTransformer(
        arch=dict(embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32),
        img_size=8,
        patch_size=4,
        in_channels=1,
        norm_cfg=dict(type='UN', warmup_iters=10, outlier_filtration=True),
    )
    names = [n for n, m in vit.named_modules() if isinstance(m, UN)]
    assert names == ['layers.0.ln1', 'layers.0.ln2', 'ln1']
    assert vit.ln1.warmup_iters == 10 and vit.ln1.outlier_filtration
    out = vit(torch.randn(2, 1, 8, 8))
    out[0].sum().backward()
    assert vit.layers[0].ln1.weight.grad is not None
