"""ONNX QDQ export: exact PyTorch conversion, onnxruntime agreement, limits."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcompress.quant import quantize_model
from mmcompress.quant.export import (
    compare_with_onnxruntime,
    convert_for_export,
    export_onnx,
    onnxruntime_session,
)


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.fc1 = nn.Linear(16, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.head(F.relu(self.fc1(x)))


CASES = {
    'lsq_w8a8': (
        dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True),
        dict(type='LSQQuantizer', bits=8),
    ),
    'lsq_w4a4': (
        dict(type='LSQQuantizer', bits=4, signed=True),
        dict(type='LSQQuantizer', bits=4),
    ),
    'ste_w4a4': (
        dict(
            type='UniformSTEQuantizer',
            bits=4,
            observer='current',
            signed=True,
            per_channel=True,
        ),
        dict(type='UniformSTEQuantizer', bits=4),
    ),
    'ewgs_w4a4': (
        dict(type='EWGSQuantizer', bits=4, role='weight'),
        dict(type='EWGSQuantizer', bits=4, role='activation'),
    ),
    'daq_w2a2': (
        dict(type='DAQQuantizer', bits=2, role='weight'),
        dict(type='DAQQuantizer', bits=2, role='activation'),
    ),
}


def _trained(case, data):
    torch.manual_seed(0)
    w, a = CASES[case]
    model = quantize_model(SmallNet(), w=w, a=a, output_layers=['head'])
    model.train()
    for batch in data[:3]:
        model(batch)
    return model.eval()


def _data():
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(16, 1, 12, 12, generator=generator) for _ in range(8)]


@pytest.mark.parametrize('case', sorted(CASES))
def test_converted_module_equals_fake_quant_model(case):
    data = _data()
    model = _trained(case, data)
    converted = convert_for_export(model)
    for batch in data:
        assert torch.allclose(converted(batch), model(batch), atol=1e-5)


@pytest.mark.parametrize('case', sorted(CASES))
def test_onnxruntime_agrees_with_pytorch(case, tmp_path):
    import onnx

    data = _data()
    model = _trained(case, data)
    path = tmp_path / f'{case}.onnx'
    blob = export_onnx(model, data[0][:1], str(path))
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    # 3 quantized layers: one activation QuantizeLinear each, weights folded
    # into integer initializers (one DequantizeLinear each)
    assert ops.count('QuantizeLinear') == 3
    assert ops.count('DequantizeLinear') == 6
    int_inits = [i for i in graph.initializer if i.data_type in (2, 3)]
    assert len(int_inits) >= 3
    session = onnxruntime_session(blob)
    result = compare_with_onnxruntime(model, session, data)
    assert result['num_samples'] == 128
    assert result['top1_agreement'] >= 0.99
    assert result['max_abs_diff'] < 1e-3 * max(1.0, float(model(data[0]).abs().max()))


def test_non_affine_and_too_wide_grids_are_refused():
    data = _data()
    torch.manual_seed(0)
    model = quantize_model(
        SmallNet(),
        w=dict(type='N2UQWeightQuantizer', bits=2),
        a=dict(type='N2UQActQuantizer', bits=2),
        output_layers=['head'],
    )
    model(data[0])
    with pytest.raises(TypeError, match='conv1: N2UQActQuantizer is not an affine'):
        convert_for_export(model)
    wide = quantize_model(
        SmallNet(),
        w=dict(type='EWGSQuantizer', bits=8, role='weight'),
        output_layers=['head'],
    )
    wide(data[0])
    with pytest.raises(ValueError, match=r'\[-255, 255\] does not fit in 8 bits'):
        convert_for_export(wide)


def test_uninitialized_model_is_refused():
    model = quantize_model(SmallNet(), w=CASES['lsq_w4a4'][0], output_layers=['head'])
    with pytest.raises(ValueError, match='never initialized'):
        convert_for_export(model)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        identity = F.relu(self.stem(x))
        x = F.relu(self.bn1(self.conv1(identity)))
        x = F.relu(self.bn2(self.conv2(x)) + identity)
        return self.head(x.mean(dim=(2, 3)))


def test_optimize_for_onnxruntime_folds_bn_and_quantizes_outputs(onnx_op_types):
    import onnx

    from mmcompress.quant.export import optimize_for_onnxruntime

    data = _data()
    torch.manual_seed(0)
    model = quantize_model(
        BNNet(), w=CASES['lsq_w8a8'][0], a=CASES['lsq_w8a8'][1], output_layers=['head']
    )
    model.bn2.weight.data[:4] = -0.5  # a negative BN factor flips channels
    for batch in data[:3]:
        model(batch)
    model.eval()
    plain = export_onnx(model, data[0][:1])
    fast = optimize_for_onnxruntime(plain, data[:2])
    graph = onnx.load_from_string(fast).graph
    ops = [node.op_type for node in graph.node]
    assert 'BatchNormalization' not in ops
    # QAT: conv1 and conv2 inputs. Added: conv2's output (calibrated) and the
    # block output read by the float mean (calibrated); the identity branch
    # reuses conv1's 8-bit input quantizer, the Add output gets none (its Relu
    # is fused into the next quantization)
    assert ops.count('QuantizeLinear') == 4
    add = next(node for node in graph.node if node.op_type == 'Add')
    conv1 = next(
        node
        for node in graph.node
        if node.op_type == 'Conv' and node.input[1].startswith('/conv1/')
    )
    assert conv1.input[0] in add.input
    int32 = [
        i for i in graph.initializer if i.data_type == 6 and i.name.endswith('_int32')
    ]
    assert len(int32) == 2  # the two convs' biases (folded BN)
    optimized = onnx_op_types(fast)
    assert 'QLinearAdd' in optimized and 'Add' not in optimized
    result = compare_with_onnxruntime(model, onnxruntime_session(fast), data)
    assert result['top1_agreement'] >= 0.95
    scale = float(model(data[0]).abs().max())
    assert result['max_abs_diff'] < 0.05 * scale


class PoolResNet(nn.Module):
    """Stem conv + max-pool, a plain block, a downsampling block, global
    pooling and a linear classifier (the layout of torchvision's ResNet)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.a1 = nn.Conv2d(8, 8, 3, padding=1)
        self.a2 = nn.Conv2d(8, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.b2 = nn.Conv2d(16, 16, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.stem(x)))
        x = F.relu(self.a2(F.relu(self.a1(x))) + x)
        x = F.relu(self.b2(F.relu(self.b1(x))) + self.down(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_optimize_for_onnxruntime_runs_everything_in_int8(onnx_op_types):
    import onnx

    from mmcompress.quant.export import optimize_for_onnxruntime

    data = [
        torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(i))
        for i in range(4)
    ]
    torch.manual_seed(0)
    model = quantize_model(
        PoolResNet(),
        w=CASES['lsq_w8a8'][0],
        a=CASES['lsq_w8a8'][1],
        keep_first_float=False,
        keep_output_float=False,
    )
    model(torch.cat(data))
    model.eval()
    plain = export_onnx(model, data[0][:1])
    # as exported, onnxruntime runs pooling, the linear layer and the convs
    # feeding residual adds in float
    plain_ops = onnx_op_types(plain)
    assert {'MaxPool', 'GlobalAveragePool', 'Gemm'} <= set(plain_ops)
    assert plain_ops.count('QLinearConv') < 6
    fast = optimize_for_onnxruntime(plain, data[:2])
    graph = onnx.load_from_string(fast).graph
    pool = next(n for n in graph.node if n.op_type == 'MaxPool')
    before = next(n for n in graph.node if n.output[0] == pool.input[0])
    after = next(
        n
        for n in graph.node
        if n.op_type == 'QuantizeLinear' and n.input[0] == pool.output[0]
    )
    # max-pooling commutes with quantization: same grid on both sides
    assert before.op_type == 'DequantizeLinear'
    assert list(before.input[1:]) == list(after.input[1:])
    # b1 and down read the same tensor with their own QAT quantizers: both
    # now read one quantization of it (the wider grid)
    b1 = next(
        n for n in graph.node if n.op_type == 'Conv' and n.input[1].startswith('/b1/')
    )
    down = next(
        n for n in graph.node if n.op_type == 'Conv' and n.input[1].startswith('/down/')
    )
    assert b1.input[0] == down.input[0]
    widest = max(
        float(model.b1.act_quantizer.step), float(model.down.act_quantizer.step)
    )
    dq = next(n for n in graph.node if n.output[0] == b1.input[0])
    scale = onnx.numpy_helper.to_array(
        next(n.attribute[0].t for n in graph.node if n.output[0] == dq.input[1])
        if any(n.output[0] == dq.input[1] for n in graph.node)
        else next(i for i in graph.initializer if i.name == dq.input[1])
    )
    assert float(scale) == pytest.approx(widest)
    optimized = onnx_op_types(fast)
    float_ops = {
        'Conv',
        'Add',
        'MaxPool',
        'GlobalAveragePool',
        'Gemm',
        'Relu',
        'DequantizeLinear',
    }
    assert not float_ops & set(optimized), optimized
    assert optimized.count('QLinearAdd') == 2
    result = compare_with_onnxruntime(model, onnxruntime_session(fast), data)
    assert result['top1_agreement'] >= 0.9
    assert result['max_abs_diff'] < 0.1 * float(model(data[0]).abs().max())


class DeconvNet(nn.Module):
    """Conv encoder and a deconv upsampler (an mmpose heatmap head's layout)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.deconv = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.final = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        return self.final(F.relu(self.bn(self.deconv(x))))


@pytest.mark.parametrize('case', ['lsq_w8a8', 'lsq_w4a4'])
def test_conv_transpose_exports_with_output_channel_weight_scales(case, tmp_path):
    import onnx

    from mmcompress.quant.export import optimize_for_onnxruntime

    data = _data()
    torch.manual_seed(0)
    model = quantize_model(
        DeconvNet(), w=dict(CASES[case][0], per_channel=True), a=CASES[case][1]
    )
    for batch in data[:3]:
        model(batch)
    model.eval()
    converted = convert_for_export(model)
    for batch in data:
        assert torch.allclose(converted(batch), model(batch), atol=1e-5)
    blob = export_onnx(model, data[0][:1])
    graph = onnx.load_from_string(blob).graph
    deconv = next(n for n in graph.node if n.op_type == 'ConvTranspose')
    wdq = next(n for n in graph.node if n.output[0] == deconv.input[1])
    assert wdq.op_type == 'DequantizeLinear'
    assert [a.i for a in wdq.attribute if a.name == 'axis'] == [1]
    weight = onnx.numpy_helper.to_array(
        next(i for i in graph.initializer if i.name == wdq.input[0])
    )
    assert weight.dtype.name == 'int8' and weight.shape == (8, 6, 4, 4)
    session = onnxruntime_session(blob)
    result = compare_with_onnxruntime(
        nn.Sequential(model, nn.Flatten()), _FlatSession(session), data
    )
    assert result['max_abs_diff'] < 1e-4
    fast = optimize_for_onnxruntime(blob, data[:2])
    out = _FlatSession(onnxruntime_session(fast)).run(None, {'input': data[0].numpy()})[
        0
    ]
    reference = model(data[0]).flatten(1).detach()
    assert (torch.from_numpy(out) - reference).abs().max() < 0.1 * reference.abs().max()


class _FlatSession:
    """An onnxruntime session whose first output is flattened per sample."""

    def __init__(self, session):
        self.session = session

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, names, feed):
        out = self.session.run(names, feed)[0]
        return [out.reshape(out.shape[0], -1)]
