"""``integer_bias``: the QAT model adds each BN shift on the int32 grid that
the integer export uses (mmcompress/quant/export/integer_bias.py)."""

import copy

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant import quantize_model
from mmcompress.quant.export import (
    TensorModeWrapper,
    convert_for_export,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)

CONFIG = 'configs/quant/mmpretrain/lsq_w8a8_fmnist.py'
LSQ8 = dict(type='LSQQuantizer', bits=8)
LSQ8_W = dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True)


def _conv_bn(integer_bias):
    model = quantize_model(
        nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2)),
        w=LSQ8_W,
        a=LSQ8,
        keep_first_float=False,
        keep_output_float=False,
        integer_bias=integer_bias,
    )
    model.train()
    model(torch.rand(2, 2, 3, 3))  # initializes the quantizers
    conv, bn = model
    with torch.no_grad():
        conv.act_quantizer.step.fill_(0.5)
        conv.weight_quantizer.step.copy_(torch.tensor([0.01, 0.02]))
        # integer weights: channel 0 (20, -5), peak 20; channel 1 (100, 25)
        conv.weight.copy_(torch.tensor([[0.2, -0.05], [2.0, 0.5]]).view(2, 2, 1, 1))
        bn.weight.copy_(torch.tensor([2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.1237, 0.0468]))
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)
    return model


def test_emulated_bias_equals_the_hand_computed_rounding():
    x = torch.tensor([[0.3, 1.7], [2.2, 0.0], [9.9, 4.4]]).t().reshape(1, 2, 1, 3)
    x_q = torch.round(x / 0.5) * 0.5
    weight = torch.tensor([[0.2, -0.05], [2.0, 0.5]])
    conv = torch.einsum('oc,nchw->nohw', weight, x_q)
    factor = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)
    # shift b = beta (mean 0, sigma 1). Grid s_x * s_w * |a| / k:
    # channel 0: 0.5 * 0.01 * 2 = 0.01, b = 12.37 steps; |w| <= 20 allows
    # k <= 6, errors |round(k u) - k u| / k = .37 .13 .0367 .12 .03 .0367:
    # k = 5, grid 0.002, round(61.85) = 62 -> 0.124.
    # channel 1: 0.5 * 0.02 * 1 = 0.01, b = 4.68 steps, |w| = 100: k = 1,
    # round(4.68) = 5 -> 0.05.
    hand = conv * factor + torch.tensor([0.124, 0.05]).view(1, 2, 1, 1)
    float_shift = conv * factor + torch.tensor([0.1237, 0.0468]).view(1, 2, 1, 1)
    model = _conv_bn(integer_bias=True).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), hand, atol=1e-6)
        assert not torch.allclose(model(x), float_shift, atol=1e-5)
        assert torch.allclose(
            _conv_bn(integer_bias=False).eval()(x), float_shift, atol=1e-6
        )
    # the export writes the rounded shift into the BN: the same outputs
    converted = convert_for_export(model)
    assert torch.allclose(converted(x), hand, atol=1e-6)
    assert converted[1].bias.tolist() == pytest.approx([0.124, 0.05])
    assert model[1].bias.tolist() == pytest.approx([0.1237, 0.0468])


def test_training_batchnorm_is_unchanged():
    # a training BN normalizes with batch statistics: no int32 grid
    x = torch.rand(2, 2, 3, 3) * 5
    hooked, reference = _conv_bn(integer_bias=True), _conv_bn(integer_bias=False)
    assert torch.equal(hooked.train()(x), reference.train()(x))


def test_own_bias_of_a_quantized_linear_is_rounded_in_eval():
    model = quantize_model(
        nn.Sequential(nn.Linear(2, 2)),
        w=LSQ8_W,
        a=LSQ8,
        keep_first_float=False,
        keep_output_float=False,
        integer_bias=True,
    )
    model.train()
    model(torch.rand(4, 2))
    linear = model[0]
    with torch.no_grad():
        linear.act_quantizer.step.fill_(0.5)
        linear.weight_quantizer.step.copy_(torch.tensor([0.01, 0.02]))
        linear.weight.copy_(torch.tensor([[0.2, -0.05], [2.0, 0.5]]))
        linear.bias.copy_(torch.tensor([0.06185, 0.0468]))
    x = torch.tensor([[0.3, 1.7], [2.2, 0.0]])
    matmul = (torch.round(x / 0.5) * 0.5) @ linear.weight.detach().t()
    # grid s_x * s_w / k: channel 0 0.005 / k, 12.37 steps, |w| <= 20:
    # k = 5, round(61.85) * 0.001 = 0.062; channel 1 0.01, k = 1: 0.05
    rounded = matmul + torch.tensor([0.062, 0.05])
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), rounded, atol=1e-6)
        # training, and a 3-d input (exported as MatMul + Add, float bias)
        assert torch.allclose(model.train()(x), matmul + linear.bias, atol=1e-6)
        model.eval()
        assert torch.allclose(model(x[None])[0], matmul + linear.bias, atol=1e-6)
        model(x)
    converted = convert_for_export(model)
    assert converted[0].bias.tolist() == pytest.approx([0.062, 0.05])
    assert torch.allclose(converted(x), rounded, atol=1e-6)


def test_state_dict_and_float_checkpoint_are_unchanged():
    torch.manual_seed(0)
    plain = _conv_bn(integer_bias=False)
    hooked = _conv_bn(integer_bias=True)
    assert list(plain.state_dict()) == list(hooked.state_dict())
    for key, value in plain.state_dict().items():
        assert torch.equal(value, hooked.state_dict()[key]), key
    hooked.eval()
    hooked(torch.rand(1, 2, 2, 2))
    assert list(hooked.state_dict()) == list(plain.state_dict())
    fresh = quantize_model(
        nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2)),
        w=LSQ8_W,
        a=LSQ8,
        keep_first_float=False,
        keep_output_float=False,
        integer_bias=True,
    )
    fresh.load_state_dict(plain.state_dict())  # strict
    # deepcopy keeps the pairing and the hooks
    x = torch.rand(1, 2, 3, 3) * 5
    fresh.eval()
    assert torch.equal(copy.deepcopy(fresh)(x), hooked(x))


def _classifier(**quant_changes):
    cfg = Config.fromfile(CONFIG).model.to_dict()
    cfg['quant'].update(quant_changes)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg)


def test_mmpretrain_resnet_pairs_every_bn_with_its_conv():
    assert Config.fromfile(CONFIG).model.quant.integer_bias is True
    torch.manual_seed(0)
    model = _classifier()
    model.train()
    model(torch.randn(2, 1, 28, 28), mode='tensor')
    backbone = model.backbone
    assert backbone.norm1._integer_bias_source == ()  # the stem conv is float
    block = backbone.layer2[0]
    for bn, conv, quantizer in (
        (block.bn1, block.conv1, backbone.layer1[1].output_quantizer),
        (block.bn2, block.conv2, block.conv2.act_quantizer),
        (block.downsample[1], block.downsample[0], backbone.layer1[1].output_quantizer),
    ):
        # readers (conv1, downsample conv) take the block input's grid
        assert bn._integer_bias_source[0] is conv
        assert bn._integer_bias_source[1] is quantizer


def _mmdet_resnet18():
    from mmdet.models.backbones import ResNet

    return ResNet(depth=18, base_channels=8, out_indices=(0, 1, 2, 3))


def _mmpretrain_resnet50():
    from mmpretrain.models.backbones import ResNet

    return ResNet(depth=50, stem_channels=8, base_channels=8, out_indices=(0, 1, 2, 3))


@pytest.mark.parametrize(
    'build, num_bns', [(_mmdet_resnet18, 20), (_mmpretrain_resnet50, 53)]
)
def test_resnet_backbone_bns_are_paired_and_rounded(build, num_bns):
    torch.manual_seed(0)
    backbone = quantize_model(
        build(), w=dict(LSQ8_W), a=LSQ8, keep_output_float=False, integer_bias=True
    )
    with torch.no_grad():  # BN statistics of a trained model
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.3)
    backbone.train()
    x = torch.randn(2, 3, 32, 32)
    backbone(x)
    paired = [
        n
        for n, m in backbone.named_modules()
        if getattr(m, '_integer_bias_source', None)
    ]
    # all but the stem BN (its conv stays float)
    assert len(paired) == num_bns - 1
    assert 'layer3.0.downsample.1' in paired and 'bn1' not in paired
    assert (
        backbone.layer2[0].conv1.act_quantizer
        is backbone.layer2[0].bn1._integer_bias_source[1]
    )
    plain = copy.deepcopy(backbone)
    for module in plain.modules():
        module._forward_hooks.clear()
    # mmdet's ResNet keeps its BNs frozen (norm_eval=True) in training: they
    # use running statistics, so the int32 shifts apply in training too
    frozen = not backbone.layer1[0].bn1.training
    assert frozen == (build is _mmdet_resnet18)
    for mode in (True, False):
        backbone.train(mode)
        plain.train(mode)
        diffs = [float((a - b).abs().max()) for a, b in zip(backbone(x), plain(x))]
        if mode and not frozen:
            assert max(diffs) == 0
            continue
        # the rounded shifts move the features by fractions of a grid step
        # that the next layers' roundings turn into a few steps
        assert 0 < max(diffs) < 1, diffs


def test_pytorch_eval_matches_onnxruntime_int8_within_one_logit_step(qat_steps):
    torch.manual_seed(0)
    quant = copy.deepcopy(Config.fromfile(CONFIG).model.quant.to_dict())
    quant['output_quantizers']['readers'].append('head.fc')
    model = _classifier(
        keep_first_float=False,
        keep_output_float=False,
        output_quantizers=quant['output_quantizers'],
        integer_bias=True,
    )
    generator = torch.Generator().manual_seed(0)
    data = [torch.randn(64, 1, 12, 12, generator=generator) for _ in range(3)]
    qat_steps(model, data[:2], torch.arange(64) % 10)
    wrapper = TensorModeWrapper(model)
    fast = optimize_for_onnxruntime(export_onnx(wrapper, data[0][:1]), data[:2])
    with torch.no_grad():
        reference = wrapper(data[2])
        # one step of the logits: the fc's input grid times its weight grid
        step = (
            model.neck.output_quantizer.step
            * model.head.fc.weight_quantizer.step.view(1, -1)
        )
    logits = torch.from_numpy(
        onnxruntime_session(fast).run(None, {'input': data[2].numpy()})[0]
    )
    assert torch.equal(logits.argmax(1), reference.argmax(1))
    # every rounding agrees, the fc's own int32 bias included
    assert float(((logits - reference).abs() / step).max()) < 0.01
    # without the option the float BN shifts flip roundings that cascade
    torch.manual_seed(0)
    unrounded = _classifier(
        keep_first_float=False,
        keep_output_float=False,
        output_quantizers=quant['output_quantizers'],
        integer_bias=False,
    )
    unrounded.load_state_dict(model.state_dict())
    unrounded.eval()
    with torch.no_grad():
        assert (
            float(((logits - unrounded(data[2], mode='tensor')).abs() / step).max()) > 1
        )


def test_export_needs_a_forward_pass_to_pair():
    trained = _conv_bn(integer_bias=True)
    model = quantize_model(
        nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2)),
        w=LSQ8_W,
        a=LSQ8,
        keep_first_float=False,
        keep_output_float=False,
        integer_bias=True,
    )
    model.load_state_dict(trained.state_dict())
    with pytest.raises(ValueError, match='ran none since it was built'):
        convert_for_export(model)
    x = torch.rand(1, 2, 2, 2)
    converted = convert_for_export(model, x)
    assert converted[1].bias.tolist() == pytest.approx([0.124, 0.05])
    assert torch.allclose(converted(x), trained.eval()(x), atol=1e-6)


def test_bad_integer_bias_settings_are_refused():
    def build(net=None, **options):
        return quantize_model(
            net or nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)),
            keep_first_float=False,
            keep_output_float=False,
            **options,
        )

    with pytest.raises(
        TypeError, match="integer_bias must be True or False, got 'yes'"
    ):
        build(w=LSQ8_W, a=LSQ8, integer_bias='yes')
    with pytest.raises(ValueError, match='needs a weight quantizer config w'):
        build(a=LSQ8, integer_bias=True)
    with pytest.raises(ValueError, match='needs integer conv inputs'):
        build(w=LSQ8_W, integer_bias=True)
    with pytest.raises(
        ValueError,
        match='Sequential has no BatchNorm and no quantized layer with a bias',
    ):
        build(
            nn.Sequential(nn.Conv2d(1, 1, 1, bias=False)),
            w=LSQ8_W,
            a=LSQ8,
            integer_bias=True,
        )
    model = build(w=LSQ8_W, a=LSQ8, integer_bias=True)
    from mmcompress.quant.export import enable_integer_bias

    with pytest.raises(ValueError, match='already enabled'):
        enable_integer_bias(model)
    with pytest.raises(ValueError, match="unknown quant keys \\['integer_bais'"):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            cfg = Config.fromfile(CONFIG).model.to_dict()
            cfg['quant']['integer_bais'] = True
            MODELS.build(cfg)
