"""EWGS Hessian-trace delta: estimator against closed forms, hook in a Runner."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from mmcompress.quant import (
    EWGSHessianDeltaHook,
    EWGSQuantizer,
    estimate_ewgs_deltas,
    hutchinson_trace,
    quantize_model,
)


def test_hutchinson_is_exact_for_diagonal_hessian():
    point = torch.rand(5, 4, requires_grad=True)
    curvature = torch.rand(5, 4) + 0.5
    loss = 0.5 * (curvature * point**2).sum()
    (grad,) = torch.autograd.grad(loss, point, create_graph=True)
    assert hutchinson_trace(grad, point) == pytest.approx(
        curvature.sum().item(), rel=1e-5
    )


def test_hutchinson_converges_for_dense_hessian():
    point = torch.rand(30, requires_grad=True)
    direction = torch.randn(30)
    loss = (direction * point).sum() ** 2
    (grad,) = torch.autograd.grad(loss, point, create_graph=True)
    estimate = hutchinson_trace(
        grad, point, max_iter=2000, tol=0.0, generator=torch.Generator().manual_seed(0)
    )
    assert estimate == pytest.approx(2 * direction.pow(2).sum().item(), rel=0.1)


def test_delta_formula_on_a_known_hessian():
    quantizer = EWGSQuantizer(2, role='activation')
    x = torch.rand(6, 5)
    quantizer(x)
    curvature = torch.rand(6, 5) + 0.5

    def loss_fn():
        out = quantizer(x)
        return 0.5 * (curvature * out**2).sum()

    (delta,) = estimate_ewgs_deltas(loss_fn, [quantizer])
    out = quantizer(x).detach()
    grad = curvature * out
    expected = curvature.sum() / out.numel() / (3 * grad.std())
    assert delta == pytest.approx(expected.item(), rel=1e-4)
    assert quantizer.record_output is False


class _Data(Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.labels = torch.arange(32) % 2
        self.inputs = torch.rand(32, 1, 6, 6, generator=generator) + self.labels.view(
            -1, 1, 1, 1
        )

    def __len__(self):
        return 32

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], label=self.labels[index])


class _Net(BaseModel):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.conv = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, inputs, label=None, mode='tensor'):
        logits = self.fc(self.conv(F.relu(self.stem(inputs))).mean(dim=(2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, label))
        return logits


def test_hook_updates_deltas_in_a_runner(tmp_path):
    model = quantize_model(
        _Net(),
        w=dict(type='EWGSQuantizer', bits=2, role='weight'),
        a=dict(type='EWGSQuantizer', bits=2, role='activation'),
        output_layers=['fc'],
    )
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=8,
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        custom_hooks=[
            dict(type='EWGSHessianDeltaHook', interval=1, num_batches=2, max_iter=20)
        ],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2)),
        default_scope='mmengine',
    )
    quantizer = runner.model.conv.weight_quantizer
    assert quantizer.delta.item() == 0.0
    runner.train()
    assert quantizer.delta.item() > 0.0
    saved = torch.load(
        tmp_path / 'epoch_2.pth', map_location='cpu', weights_only=False
    )['state_dict']
    assert saved['conv.weight_quantizer.delta'].item() == quantizer.delta.item()


def test_hook_argument_validation():
    with pytest.raises(ValueError, match='interval must be an int >= 1'):
        EWGSHessianDeltaHook(interval=0)
