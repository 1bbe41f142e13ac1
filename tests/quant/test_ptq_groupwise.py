"""Group-wise quantization (Yuan et al.): G groups of output channels, one
range per group, in the quantizers, PTQ calibration and ONNX export."""

import pytest
import torch
import torch.nn as nn

from mmcompress.quant import LSQQuantizer, QuantConfig, UniformSTEQuantizer, quantize_
from mmcompress.quant.export import (
    TensorModeWrapper,
    compare_with_onnxruntime,
    export_onnx,
    onnxruntime_session,
)
from mmcompress.quant.ptq import calibrate_ranges


def _lsq(**kwargs):
    q = LSQQuantizer(4, signed=True, grad_scale=False, **kwargs)
    q.initialized.fill_(1)
    return q


def test_lsq_groups_degenerate_to_per_tensor_and_per_channel():
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3)
    tensor = _lsq()
    tensor.step.data.fill_(0.2)
    g1 = _lsq(per_channel=True, num_channels=6, num_groups=1)
    g1.step.data.fill_(0.2)
    assert g1.step.shape == (1,)
    assert torch.equal(g1(w), tensor(w))
    steps = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25, 0.05])
    channel = _lsq(per_channel=True, num_channels=6)
    channel.step.data = steps.clone()
    g6 = _lsq(per_channel=True, num_channels=6, num_groups=6)
    g6.step.data = steps.clone()
    assert torch.equal(g6(w), channel(w))


def test_lsq_groups_share_a_step_and_sum_its_gradient():
    torch.manual_seed(0)
    w = torch.randn(6, 2, 3, 3)
    g2 = _lsq(per_channel=True, num_channels=6, num_groups=2)
    g2.step.data = torch.tensor([0.1, 0.3])
    channel = _lsq(per_channel=True, num_channels=6)
    channel.step.data = torch.tensor([0.1, 0.1, 0.1, 0.3, 0.3, 0.3])
    out = g2(w)
    assert torch.equal(out, channel(w))
    out.pow(2).sum().backward()
    channel(w).pow(2).sum().backward()
    expected = channel.step.grad.reshape(2, 3).sum(1)
    assert torch.allclose(g2.step.grad, expected)
    # init: 2 mean|x| / sqrt(Qp) over each group's channels
    fresh = LSQQuantizer(4, signed=True, per_channel=True, num_channels=6, num_groups=2)
    fresh.train()
    fresh(w)
    hand = 2 * w.abs().reshape(2, -1).mean(1) / 7**0.5
    assert torch.allclose(fresh.step.data, hand)
    # export: one scale per channel, repeated over the group
    params = g2.export_qparams()
    assert torch.equal(params.scale, torch.tensor([0.1, 0.1, 0.1, 0.3, 0.3, 0.3]))
    assert params.axis == 0


def test_uniform_ste_groups_take_each_groups_range():
    w = torch.tensor([[1.0], [-2.0], [0.5], [4.0]])
    q = UniformSTEQuantizer(
        2,
        signed=True,
        observer='current',
        per_channel=True,
        num_channels=4,
        num_groups=2,
    )
    q.initialized.fill_(1)
    # group 0: absmax 2 -> scale 2 (qmax 1); group 1: absmax 4 -> scale 4
    expected = torch.tensor([[0.0], [-2.0], [0.0], [4.0]])  # 1 / 2 rounds to even
    assert torch.equal(q(w), expected)
    assert torch.equal(q.export_qparams(w).scale, torch.tensor([2.0, 2.0, 4.0, 4.0]))


def test_group_argument_errors():
    with pytest.raises(ValueError, match='num_groups=2 needs per_channel=True'):
        LSQQuantizer(4, num_groups=2)
    with pytest.raises(ValueError, match='num_groups=4 must be >= 1 and divide the 6'):
        LSQQuantizer(4, per_channel=True, num_channels=6, num_groups=4)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def data_preprocessor(self, batch, training=False):
        return batch

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.relu(self.conv2(torch.relu(self.conv1(inputs))))
        return self.fc(x.mean((2, 3)))


def test_groupwise_ptq_and_onnx_export_agree():
    torch.manual_seed(0)
    model = Net()
    quantize_(
        model,
        QuantConfig(
            w=dict(
                type='LSQQuantizer', bits=4, signed=True, per_channel=True, num_groups=4
            ),
            a=dict(type='LSQQuantizer', bits=8),
        ),
    )
    model.eval()
    batches = [dict(inputs=torch.randn(8, 1, 8, 8)) for _ in range(2)]
    calibrate_ranges(model, batches, progress=False)
    step = model.conv2.weight_quantizer.step
    assert step.shape == (4,)
    absmax = model.conv2.weight.detach().abs().reshape(4, -1).amax(1)
    assert torch.allclose(step, absmax / 7)
    wrapper = TensorModeWrapper(model)
    session = onnxruntime_session(export_onnx(wrapper, torch.randn(1, 1, 8, 8)))
    report = compare_with_onnxruntime(wrapper, session, [torch.randn(16, 1, 8, 8)])
    assert report['top1_agreement'] == 1.0
    assert report['max_abs_diff'] < 1e-4
