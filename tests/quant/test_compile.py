"""torch.compile of a quantized classifier (W4A4 LSQ, the Fashion-MNIST QAT
config): no graph break in the forward, and compiled training steps give the
eager losses."""

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmcompress  # noqa: F401  (registers the quantized model)
from mmcompress.quant.quantizers import LSQQuantizer
from mmcompress.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LSQ = osp.join(REPO, 'configs/quant/mmpretrain/lsq_w4a4_fmnist.py')


def _lsq_model():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(Config.fromfile(LSQ).model)


def test_lsq_quantized_forward_is_one_graph(deterministic):
    model = _lsq_model().train()
    x = torch.randn(4, 1, 28, 28)
    model(x, mode='tensor')  # the quantizers initialize (eager)
    explain = torch._dynamo.explain(model)(x, mode='tensor')
    assert explain.graph_break_count == 0, [b.reason for b in explain.break_reasons]
    assert explain.graph_count == 1


def _train(model, batches, labels, lr=0.01):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for x in batches:
        loss = torch.nn.functional.cross_entropy(model(x, mode='tensor'), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_compiled_qat_steps_match_eager(deterministic):
    """The first compiled call initializes the quantizers (run eagerly inside
    the compiled frame), later calls reuse the recompiled graph."""
    model = _lsq_model().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(4, 1, 28, 28) for _ in range(3)]
    labels = torch.tensor([0, 1, 2, 3])
    eager = _train(model, batches, labels)
    model.load_state_dict(state)
    quantizers = [m for m in model.modules() if isinstance(m, LSQQuantizer)]
    assert quantizers and not any(q._initialized_flag for q in quantizers)
    torch._dynamo.reset()
    compiled = _train(torch.compile(model, backend='aot_eager'), batches, labels)
    assert all(q._initialized_flag for q in quantizers)
    assert all(torch.isfinite(torch.tensor(compiled)))
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_flags_follow_reset_and_state_dict_load():
    quantizer = LSQQuantizer(4)
    quantizer.train()(torch.randn(8) - 0.5)
    assert quantizer._initialized_flag and quantizer._signed_flag
    state = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.reset_initialization()
    assert not quantizer._initialized_flag
    quantizer.load_state_dict(state)
    assert quantizer._initialized_flag and quantizer._signed_flag
    quantizer.signed.fill_(0)  # a direct buffer write, then sync_flags()
    quantizer.sync_flags()
    assert not quantizer._signed_flag and quantizer.qmin == 0


@pytest.mark.parametrize('fused', [False, True])
def test_compiled_lsq_quantizer_matches_eager(fused):
    """Also the fused kernel (custom ops with fake implementations)."""
    quantizer = LSQQuantizer(4, fused=fused).train()
    x = torch.randn(64, requires_grad=True)
    quantizer(x.detach())
    out = quantizer(x)
    out.sum().backward()
    grads = (x.grad.clone(), quantizer.step.grad.clone())
    x.grad = None
    quantizer.step.grad = None
    torch._dynamo.reset()
    compiled = torch.compile(quantizer, backend='aot_eager', fullgraph=True)
    out_c = compiled(x)
    out_c.sum().backward()
    torch.testing.assert_close(out_c, out)
    torch.testing.assert_close(x.grad, grads[0])
    torch.testing.assert_close(quantizer.step.grad, grads[1])
