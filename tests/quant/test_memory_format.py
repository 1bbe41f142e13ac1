"""channels_last and bf16 autocast through QAT (W4A4 LSQ, the Fashion-MNIST
QAT config) on CPU."""

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmcompress  # noqa: F401  (registers the quantized model)
from mmcompress.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LSQ = osp.join(REPO, 'configs/quant/mmpretrain/lsq_w4a4_fmnist.py')


def _initialized_model(fused=False):
    cfg = Config.fromfile(LSQ)
    for role in ('w', 'a'):
        cfg.model.quant[role]['fused'] = fused
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).train()
    model(torch.randn(8, 1, 28, 28), mode='tensor')  # the quantizers initialize
    return model


def _loss_and_grads(model, x, labels):
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x, mode='tensor'), labels)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _layer_step(layer, x):
    layer.zero_grad()
    x = x.clone().requires_grad_()
    out = layer(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    return out.detach(), x.grad, grads


@pytest.mark.parametrize('fused', [False, True])
def test_channels_last_quantized_conv_equals_contiguous(deterministic, fused):
    """Same input values in either layout: the same quantized operands, so the
    output and every gradient agree up to the convolution's float rounding."""
    model = _initialized_model(fused)
    layer = model.backbone.layer2[0].conv1
    inputs = []
    layer.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
    model(torch.randn(8, 1, 28, 28), mode='tensor')
    x = inputs[-1]
    out, grad_x, grads = _layer_step(layer, x)
    layer.to(memory_format=torch.channels_last)
    assert layer.weight.is_contiguous(memory_format=torch.channels_last)
    out_cl, grad_x_cl, grads_cl = _layer_step(
        layer, x.contiguous(memory_format=torch.channels_last)
    )
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl, out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x_cl, grad_x, rtol=1e-5, atol=1e-6)
    assert (
        grads_cl.keys()
        == grads.keys()
        >= {
            'weight',
            'weight_quantizer.step',
            'act_quantizer.step',
        }
    )
    for name, grad in grads.items():
        torch.testing.assert_close(grads_cl[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_channels_last_qat_step_is_close_to_contiguous(deterministic):
    """Whole model in training mode: batch-norm statistics summed in another
    order differ in the last bits, which moves an activation or two across a
    rounding boundary of a 4-bit grid (and the batch statistics of the next
    layers with it), so the loss agrees within 1 %, not bit for bit."""
    model = _initialized_model()
    x = torch.randn(8, 1, 28, 28)
    labels = torch.arange(8) % 10
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, grads = _loss_and_grads(model, x, labels)
    model.load_state_dict(state)  # same BN statistics for the second pass
    model.to(memory_format=torch.channels_last)
    loss_cl, grads_cl = _loss_and_grads(
        model, x.to(memory_format=torch.channels_last), labels
    )
    torch.testing.assert_close(loss_cl, loss, rtol=0.01, atol=0)
    assert grads_cl.keys() == grads.keys()
    for name, grad in grads_cl.items():
        assert torch.isfinite(grad).all(), name


def test_bf16_autocast_qat_step_is_close_to_fp32(deterministic):
    """bf16 keeps 8 bits of mantissa: the loss stays within 2 % of float32."""
    model = _initialized_model()
    x = torch.randn(8, 1, 28, 28)
    labels = torch.arange(8) % 10
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss, grads = _loss_and_grads(model, x, labels)
    model.load_state_dict(state)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits = model(x, mode='tensor')
    assert logits.dtype == torch.bfloat16
    model.zero_grad()
    loss_bf16 = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss_bf16.backward()
    assert torch.isfinite(loss_bf16)
    torch.testing.assert_close(loss_bf16.detach(), loss, rtol=0.02, atol=0)
    steps = [n for n in grads if n.endswith('quantizer.step')]
    assert steps
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.dtype == torch.float32, name
        assert torch.isfinite(param.grad).all(), name
