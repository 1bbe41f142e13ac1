"""Binary quantizers, RPReLU and the ReActNet backbone (AdamBNN, spec §5)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcompress.models.backbones.reactnet import ReActBlock, ReActNet
from mmcompress.quant.binary import (
    LearnableBias,
    RPReLU,
    RSignQuantizer,
    ScaledBinaryWeightQuantizer,
    approx_sign,
)
from mmcompress.quant.layers import QuantConv2d


def approx_sign_surrogate(x):
    """Bi-Real's ApproxSign polynomial, written independently of the module."""
    return torch.where(
        x < -1,
        -torch.ones_like(x),
        torch.where(
            x < 0, x * x + 2 * x, torch.where(x < 1, -x * x + 2 * x, torch.ones_like(x))
        ),
    )


# --------------------------------------------------------------- approx sign
def test_approx_sign_forward_is_sign():
    x = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.3, 1.0, 2.5])
    assert torch.equal(approx_sign(x), torch.tensor([-1.0, -1, -1, 0, 1, 1, 1]))


def test_approx_sign_gradient_matches_spec_piecewise_formula():
    # spec: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 otherwise
    x = torch.tensor(
        [-1.5, -1.0, -0.75, -0.25, 0.0, 0.25, 0.5, 0.999, 1.0, 2.0], requires_grad=True
    )
    upstream = torch.tensor([1.0, 1, 1, 1, 1, 1, 1, 1, 1, 1]) * 3.0
    approx_sign(x).backward(upstream)
    expected = 3.0 * torch.tensor([0.0, 0.0, 0.5, 1.5, 2.0, 1.5, 1.0, 0.002, 0.0, 0.0])
    torch.testing.assert_close(x.grad, expected)


def test_approx_sign_gradient_equals_surrogate_finite_difference():
    torch.manual_seed(0)
    x = (torch.rand(200, dtype=torch.float64) * 3 - 1.5).requires_grad_()
    approx_sign(x).sum().backward()
    eps = 1e-6
    finite_diff = (
        approx_sign_surrogate(x.detach() + eps)
        - approx_sign_surrogate(x.detach() - eps)
    ) / (2 * eps)
    torch.testing.assert_close(x.grad, finite_diff, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------ binary weights
def test_scaled_binary_weight_per_channel_scale_and_values():
    weight = torch.tensor(
        [[[[0.5, -1.5], [0.25, -0.75]]], [[[-0.1, 0.2], [0.3, -0.4]]]],
        requires_grad=True,
    )
    quantizer = ScaledBinaryWeightQuantizer(num_channels=2)
    out = quantizer(weight)
    # mean |W| per output channel: (0.5+1.5+0.25+0.75)/4 = 0.75, 1.0/4 = 0.25
    expected = torch.tensor(
        [[[[0.75, -0.75], [0.75, -0.75]]], [[[-0.25, 0.25], [0.25, -0.25]]]]
    )
    torch.testing.assert_close(out, expected)
    # clipped STE: gradient passes where |W| <= 1, scale gets none
    upstream = torch.arange(8.0).reshape(2, 1, 2, 2)
    out.backward(upstream)
    mask = torch.tensor([[[[1.0, 0], [1, 1]]], [[[1, 1], [1, 1]]]])
    torch.testing.assert_close(weight.grad, upstream * mask)


def test_scaled_binary_weight_clip_boundary_and_linear_weight():
    weight = torch.tensor([[1.0, -1.0, 1.0001], [-2.0, 0.5, 0.5]], requires_grad=True)
    out = ScaledBinaryWeightQuantizer(num_channels=2)(weight)
    torch.testing.assert_close(
        out,
        torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])
        * torch.tensor([[3.0001 / 3], [1.0]]),
    )
    out.sum().backward()
    torch.testing.assert_close(weight.grad, torch.tensor([[1.0, 1, 0], [0, 1, 1]]))


def test_scaled_binary_weight_per_tensor_scale():
    weight = torch.tensor([[0.5, -1.5], [0.2, -0.2]])
    out = ScaledBinaryWeightQuantizer(per_channel=False)(weight)
    torch.testing.assert_close(out, torch.sign(weight) * 0.6)


def test_binary_quantizers_reject_other_bit_widths_and_missing_channels():
    with pytest.raises(ValueError, match='bits=2'):
        ScaledBinaryWeightQuantizer(bits=2, num_channels=3)
    with pytest.raises(ValueError, match='valid bit-widths are 1..1'):
        RSignQuantizer(bits=4, num_channels=3)
    with pytest.raises(ValueError, match='num_channels'):
        RSignQuantizer()


def test_binary_quantizers_empty_and_non_finite_inputs():
    rsign = RSignQuantizer(num_channels=2)
    empty = torch.empty(0, 2, 3, 3)
    assert rsign(empty).shape == empty.shape
    x = torch.tensor([float('nan'), float('inf'), -float('inf'), 0.5]).reshape(
        1, 2, 2, 1
    )
    out = rsign(x)
    assert torch.isnan(out[0, 0, 0, 0])
    assert out.flatten()[1:].tolist() == [1.0, -1.0, 1.0]
    weight = torch.tensor([[float('nan'), 1.0], [0.5, -0.5]])
    out = ScaledBinaryWeightQuantizer(num_channels=2)(weight)
    assert torch.isnan(out[0]).all()
    assert out[1].tolist() == [0.5, -0.5]


# ------------------------------------------------------------------ RSign
def test_rsign_forward_threshold_per_channel():
    rsign = RSignQuantizer(num_channels=2)
    with torch.no_grad():
        rsign.shift.copy_(torch.tensor([0.5, -0.5]))
    x = torch.tensor([-0.4, 0.4]).reshape(1, 1, 2, 1).expand(1, 2, 2, 1)
    out = rsign(x.contiguous())
    # channel 0: sign(x + 0.5) -> +1, +1; channel 1: sign(x - 0.5) -> -1, -1
    assert out.reshape(2, 2).tolist() == [[1.0, 1.0], [-1.0, -1.0]]


@pytest.mark.parametrize('channel_axis,shape', [(1, (3, 4, 5, 5)), (-1, (6, 7, 4))])
def test_rsign_gradients_match_surrogate_finite_differences(channel_axis, shape):
    torch.manual_seed(1)
    rsign = RSignQuantizer(num_channels=4, channel_axis=channel_axis).double()
    with torch.no_grad():
        rsign.shift.uniform_(-0.3, 0.3)
    x = (torch.randn(shape, dtype=torch.float64) * 0.7).requires_grad_()
    upstream = torch.randn(shape, dtype=torch.float64)
    (rsign(x) * upstream).sum().backward()

    view = [1] * len(shape)
    view[channel_axis] = 4

    def surrogate_loss(inp, shift):
        return (approx_sign_surrogate(inp + shift.reshape(view)) * upstream).sum()

    eps = 1e-6
    shift = rsign.shift.detach()
    fd_shift = torch.stack(
        [
            (
                surrogate_loss(x.detach(), shift + eps * torch.eye(4)[c].double())
                - surrogate_loss(x.detach(), shift - eps * torch.eye(4)[c].double())
            )
            / (2 * eps)
            for c in range(4)
        ]
    )
    torch.testing.assert_close(rsign.shift.grad, fd_shift, atol=1e-5, rtol=1e-5)
    fd_x = (
        (
            approx_sign_surrogate(x.detach() + eps + shift.reshape(view))
            - approx_sign_surrogate(x.detach() - eps + shift.reshape(view))
        )
        / (2 * eps)
        * upstream
    )
    torch.testing.assert_close(x.grad, fd_x, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------- RPReLU
def test_rprelu_forward_and_gradcheck():
    torch.manual_seed(2)
    module = RPReLU(3).double()
    with torch.no_grad():
        module.shift_in.bias.copy_(torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
        module.shift_out.bias.copy_(torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    x = (
        torch.tensor([-1.0, 1.0], dtype=torch.float64)
        .view(1, 1, 2, 1)
        .repeat(1, 3, 1, 1)
    )
    out = module(x)
    # y = PReLU(x + b1) + b2 with slope 0.25
    expected = torch.tensor(
        [[0.775, 2.1], [1.7, 2.8], [2.825, 4.3]], dtype=torch.float64
    )
    torch.testing.assert_close(out.reshape(3, 2), expected)

    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    params = [module.shift_in.bias, module.prelu.weight, module.shift_out.bias]

    def fn(inp, b1, slope, b2):
        return F.prelu(inp + b1, slope) + b2

    assert torch.autograd.gradcheck(fn, (x, *params))
    # the module's gradient equals the functional one
    module(x).sum().backward()
    for param in params:
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_learnable_bias_rejects_wrong_input():
    with pytest.raises(ValueError, match=r'expects an \(N, 3, H, W\) input'):
        LearnableBias(3)(torch.zeros(2, 4, 5, 5))


# ------------------------------------------------------------------ layers
def _reference_block(block, x):
    """The official ReActNet-A block written with functional ops (eval mode)."""

    def bn(module, inp):
        return F.batch_norm(
            inp,
            module.running_mean,
            module.running_var,
            module.weight,
            module.bias,
            False,
            0.0,
            module.eps,
        )

    def conv(module, inp):
        scale = module.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(
            inp,
            torch.sign(module.weight) * scale,
            stride=module.stride,
            padding=module.padding,
        )

    def rprelu(module, inp):
        return (
            F.prelu(inp + module.shift_in.bias, module.prelu.weight)
            + module.shift_out.bias
        )

    def rsign(module, inp):
        return torch.sign(inp + module.shift.view(1, -1, 1, 1))

    out1 = bn(block.bn3x3, conv(block.conv3x3, rsign(block.sign3x3, x)))
    stride = block.conv3x3.stride[0]
    out1 = rprelu(block.act1, out1 + (F.avg_pool2d(x, 2) if stride == 2 else x))
    out2 = rsign(block.sign1x1, out1)
    branches = [
        bn(b, conv(c, out2)) + out1 for c, b in zip(block.convs1x1, block.bns1x1)
    ]
    return rprelu(block.act2, torch.cat(branches, dim=1))


@pytest.mark.parametrize('in_channels,out_channels,stride', [(4, 4, 1), (4, 8, 2)])
def test_reactblock_matches_reference(in_channels, out_channels, stride):
    torch.manual_seed(4)
    block = ReActBlock(
        in_channels, out_channels, stride, binary_activations=True, binary_weights=True
    )
    with torch.no_grad():
        for param in block.parameters():
            param.add_(torch.randn_like(param) * 0.1)
        for module in block.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    block.eval()
    x = torch.randn(2, in_channels, 8, 8)
    torch.testing.assert_close(block(x), _reference_block(block, x))


def test_reactblock_rejects_bad_channels_and_stride():
    with pytest.raises(ValueError, match='keeps or doubles'):
        ReActBlock(4, 12, 1, True, False)
    with pytest.raises(ValueError, match='stride must be 1 or 2'):
        ReActBlock(4, 4, 3, True, False)


# ---------------------------------------------------------------- backbone
def test_reactnet_fmnist_shapes_and_out_indices():
    model = ReActNet('fmnist', in_channels=1, out_indices=(0, 1, -1))
    outs = model(torch.randn(2, 1, 28, 28))
    assert [tuple(o.shape) for o in outs] == [
        (2, 32, 14, 14),
        (2, 32, 14, 14),
        (2, 64, 7, 7),
    ]
    assert model.out_channels == [32, 32, 64, 64]


def test_reactnet_a_shapes_and_widen_factor():
    model = ReActNet('a', widen_factor=0.25)
    outs = model(torch.randn(1, 3, 64, 64))
    assert tuple(outs[0].shape) == (1, 256, 2, 2)
    assert len(model.blocks) == 13


def test_reactnet_custom_arch_and_odd_sizes():
    model = ReActNet(
        dict(stem_channels=8, blocks=[(16, 2), (32, 2)]), in_channels=1, stem_stride=1
    )
    assert tuple(model(torch.randn(1, 1, 7, 7))[0].shape) == (1, 32, 2, 2)


def test_reactnet_bad_arguments():
    with pytest.raises(ValueError, match="unknown ReActNet arch 'b'"):
        ReActNet('b')
    with pytest.raises(ValueError, match='"stem_channels" and "blocks"'):
        ReActNet(dict(blocks=[(8, 1)]))
    with pytest.raises(ValueError, match='out of range for 4 blocks'):
        ReActNet('fmnist', out_indices=(4,))
    with pytest.raises(ValueError, match='widen_factor'):
        ReActNet('fmnist', widen_factor=0)


def test_reactnet_binary_switches_and_step1_to_step2_checkpoint():
    torch.manual_seed(5)
    step1 = ReActNet('fmnist', in_channels=1)
    step2 = ReActNet('fmnist', in_channels=1, binary_weights=True)
    real = ReActNet('fmnist', in_channels=1, binary_activations=False)
    assert not any(isinstance(m, RSignQuantizer) for m in real.modules())
    result = step2.load_state_dict(step1.state_dict())
    assert not result.missing_keys and not result.unexpected_keys

    # step 1: the inputs of every block conv are binary, weights real
    seen = {}

    def record(module, args):
        seen.setdefault(module, args[0])

    convs = [m for m in step1.modules() if isinstance(m, QuantConv2d)]
    for conv in convs:
        conv.register_forward_pre_hook(record)
    step1(torch.randn(2, 1, 28, 28))
    assert len(seen) == len(convs) == 10
    for inp in seen.values():
        assert set(inp.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert all(not c.weight_quantizer.enabled for c in convs)
    step2_convs = [c for c in step2.modules() if isinstance(c, QuantConv2d)]
    assert len(step2_convs) == 10
    assert all(c.weight_quantizer.enabled for c in step2_convs)


# ---------------------------------------------------------- real-data training
def _fashion_mnist_tensors(split, size):
    from mmcompress.datasets.fashion_mnist import FashionMNISTDataset

    dataset = FashionMNISTDataset(split=split, subset_size=size)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    images = torch.tensor(np.stack([info['img'] for info in infos]))
    images = (images.float().unsqueeze(1) / 255 - 0.286) / 0.353
    labels = torch.tensor([info['gt_label'] for info in infos])
    return images, labels


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_w1a1_reactnet_learns_fashion_mnist(one_thread):
    """Binary weights and activations from scratch: 80 Adam steps on real data.

    One thread: a binary network amplifies the float summation order, so the
    accuracy after 80 steps depends on the thread count (0.41-0.66 measured);
    with one thread the run is reproducible (0.595).
    """
    torch.manual_seed(0)
    images, labels = _fashion_mnist_tensors('train', 4000)
    test_images, test_labels = _fashion_mnist_tensors('test', 1000)
    backbone = ReActNet('fmnist', in_channels=1, binary_weights=True)
    head = torch.nn.Linear(backbone.out_channels[-1], 10)

    def logits(x):
        return head(backbone(x)[0].mean(dim=(2, 3)))

    def accuracy():
        backbone.eval()
        with torch.no_grad():
            correct = logits(test_images).argmax(1) == test_labels
        backbone.train()
        return correct.float().mean().item()

    initial = accuracy()
    optimizer = torch.optim.Adam(
        list(backbone.parameters()) + list(head.parameters()), lr=5e-3
    )
    for _ in range(80):
        index = torch.randint(0, len(images), (64,))
        loss = F.cross_entropy(logits(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = accuracy()
    assert initial < 0.2
    assert final > 0.45, f'W1A1 ReActNet reached only {final:.3f}'


# ------------------------------------------------ generic transform, W1A1
def test_quantize_model_with_binary_quantizers_matches_reference():
    from mmcompress.quant.transform import quantize_model

    torch.manual_seed(6)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 5 * 5, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    )
    reference = [m for m in model if not isinstance(m, torch.nn.ReLU)]
    quantize_model(
        model, w=dict(type='ScaledBinaryWeightQuantizer'), a=dict(type='RSignQuantizer')
    )
    conv2, fc1 = model[2], model[4]
    assert isinstance(conv2.act_quantizer, RSignQuantizer)
    assert conv2.act_quantizer.shift.shape == (4,)
    assert fc1.act_quantizer.shift.shape == (150,)
    assert fc1.act_quantizer.channel_axis == -1
    with torch.no_grad():
        conv2.act_quantizer.shift.uniform_(-0.5, 0.5)
        fc1.act_quantizer.shift.uniform_(-0.5, 0.5)

    def binary(weight):
        dims = tuple(range(1, weight.dim()))
        return torch.sign(weight) * weight.abs().mean(dim=dims, keepdim=True)

    x = torch.randn(2, 1, 5, 5)
    # first conv and last linear stay float (transform defaults)
    h = F.relu(F.conv2d(x, reference[0].weight, reference[0].bias, padding=1))
    h = torch.sign(h + conv2.act_quantizer.shift.view(1, -1, 1, 1))
    h = F.conv2d(h, binary(conv2.weight), conv2.bias, padding=1).flatten(1)
    h = torch.sign(h + fc1.act_quantizer.shift)
    h = F.relu(F.linear(h, binary(fc1.weight), fc1.bias))
    expected = F.linear(h, model[6].weight, model[6].bias)
    torch.testing.assert_close(model(x), expected)
