"""LBT gradient quantizers under torch.compile: the quantized layers stay in
one graph (the quantized backward is an opaque operator) and compiled training
gives the eager gamma trajectories, counters and weights; copies of a
quantizer keep their own state."""

import copy

import torch
import torch.nn as nn

from mmcompress.quant import LBTGradQuantizer, quantize_model


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)
    )
    model = quantize_model(
        model,
        w=dict(type='LSQQuantizer', bits=4, signed=True),
        a=dict(type='LSQQuantizer', bits=4),
        g=dict(type='LBTGradQuantizer', bits=4),
        keep_output_float=False,
    )
    with torch.no_grad():  # the LSQ ranges initialize (eagerly), not LBT
        model(torch.randn(8, 3, 10, 10))
    return model


def _grad_quantizers(model):
    return [q for q in model.modules() if isinstance(q, LBTGradQuantizer)]


def _train(model, step_fn, steps=5):
    """SGD steps on seeded inputs; returns per step the loss and the gammas."""
    history = []
    for step in range(steps):
        x = torch.randn(8, 3, 10, 10, generator=torch.Generator().manual_seed(step))
        model.zero_grad()
        loss = step_fn(x).pow(2).mean()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.01 * p.grad
        history.append((loss.item(), [float(q.gamma) for q in _grad_quantizers(model)]))
    return history


def test_compiled_lbt_training_gives_the_eager_gamma_trajectory(deterministic):
    """fullgraph=True: no graph break in the quantized forward (the walk-down
    and the gamma updates run in the compiled backward); five steps, the
    first one with the walk-down, give the eager losses, gammas, backward
    counts and weights."""
    eager = _model()
    compiled = copy.deepcopy(eager)
    ref = _train(eager, eager)
    torch._dynamo.reset()
    got = _train(compiled, torch.compile(compiled, backend='aot_eager', fullgraph=True))
    assert [gammas for _, gammas in got] == [gammas for _, gammas in ref]
    assert len({tuple(gammas) for _, gammas in ref}) > 1  # gamma moves
    torch.testing.assert_close(
        [loss for loss, _ in got], [loss for loss, _ in ref], rtol=1e-6, atol=0
    )
    for q_ref, q_got in zip(_grad_quantizers(eager), _grad_quantizers(compiled)):
        assert int(q_got.num_backward) == int(q_ref.num_backward) == 5
        assert int(q_got.initialized) == 1
    for p_ref, p_got in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p_got, p_ref, rtol=1e-6, atol=1e-7)
    torch._dynamo.reset()


def test_lbt_quantized_forward_is_one_graph():
    model = _model()
    x = torch.randn(2, 3, 10, 10, requires_grad=True)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(x)
    assert (explain.graph_count, explain.graph_break_count) == (1, 0)
    torch._dynamo.reset()


def test_copied_quantizer_updates_its_own_state():
    """A deep copy's backward runs the copy's controller, not the original's."""
    original = LBTGradQuantizer(bits=4)
    x = torch.zeros(64, requires_grad=True)
    original(x).backward(torch.randn(64))
    twin = copy.deepcopy(original)
    gamma = float(original.gamma)
    x = torch.zeros(64, requires_grad=True)
    twin(x).backward(torch.randn(64))
    assert int(twin.num_backward) == 2 and int(original.num_backward) == 1
    assert float(original.gamma) == gamma and float(twin.gamma) != gamma
