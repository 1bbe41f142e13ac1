"""Per-layer latency inside the integer graph (mmcompress.quant.graph_latency)
and the output sensitivity of multi-output networks: the table from given
timings by hand, the graph with one layer float in onnxruntime, the KL
divergence of a two-output model as the sum of its outputs'."""

import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS, DefaultScope

import mmcompress  # noqa: F401
from mmcompress.quant import graph_latency
from mmcompress.quant.export import onnxruntime_session
from mmcompress.quant.mixed_precision import _fake_quant, output_sensitivity

QUANT = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True),
    a=dict(type='LSQQuantizer', bits=8),
)


def _classifier():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        return MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(
                    type='ResNet_CIFAR',
                    depth=18,
                    in_channels=1,
                    base_channels=4,
                    stem_channels=4,
                ),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=3, in_channels=32),
            )
        ).eval()


def test_table_from_timings_by_hand(monkeypatch):
    """Integer options: the integer graph's median latency over the layers;
    float: plus what the graph with that layer float took longer (not less
    than nothing)."""
    times = {(): 2.0, ('a',): 2.6, ('b',): 1.9}  # ms, by float layers
    monkeypatch.setattr(
        graph_latency,
        'integer_graph',
        lambda m, x, q, float_layers=(): tuple(float_layers),
    )
    monkeypatch.setattr(graph_latency, 'onnxruntime_session', lambda blob, t: blob)
    calls = []

    def timed(sessions, feed, runs, warmup=3):
        calls.append(runs)
        return {key: times[blob] for key, blob in sessions.items()}

    monkeypatch.setattr(graph_latency, 'interleaved_session_ms', timed)
    table = graph_latency.graph_layer_latency(
        nn.Identity(), torch.zeros(1, 1, 4, 4), ['a', 'b'], QUANT, runs=7
    )
    assert calls == [7, 7]
    assert table == {
        'a': {None: pytest.approx(1.0 + 0.6), 8: 1.0, 4: 1.0},
        'b': {None: 1.0, 8: 1.0, 4: 1.0},
    }


def test_no_layers_is_an_error():
    with pytest.raises(ValueError, match='no layers given; pass the names'):
        graph_latency.graph_layer_latency(
            nn.Identity(), torch.zeros(1, 1, 4, 4), [], QUANT
        )


def _integer_weights(blob: bytes) -> int:
    """Convs whose weights are int8 initializers (read by a DequantizeLinear)."""
    graph = onnx.load_from_string(blob).graph
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    return sum(
        1
        for node in graph.node
        if node.op_type == 'DequantizeLinear' and node.input[0] in int8
    )


def test_integer_graph_keeps_the_named_layer_float():
    model = _classifier()
    x = torch.randn(1, 1, 12, 12)
    base = graph_latency.integer_graph(model, x, QUANT)
    one = graph_latency.integer_graph(model, x, QUANT, ['backbone.layer2.0.conv1'])
    assert _integer_weights(one) == _integer_weights(base) - 1 > 0
    # both run in onnxruntime and stay close to the float model
    with torch.no_grad():
        reference = model.head.fc(model.neck(model.backbone(x))[-1])
    for blob in (base, one):
        out = onnxruntime_session(blob).run(None, {'input': x.numpy()})[0]
        assert out.shape == (1, 3)
        assert torch.allclose(torch.from_numpy(out), reference, atol=0.1)
    assert graph_latency.integer_graph(model, x, QUANT) == base  # model unchanged


class _TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 3, 1)
        self.right = nn.Conv2d(4, 5, 1)

    def forward(self, x):
        y = self.conv(x).relu()
        return self.left(y), self.right(y)


def _kl_by_hand(model, x, bits, pick):
    """KL of output ``pick`` with ``conv`` fake-quantized, computed directly."""
    with torch.no_grad():
        ref = model(x)[pick]
        w = _fake_quant(model.conv.weight, bits, axis=0)
        y = F.conv2d(_fake_quant(x, bits), w, model.conv.bias, padding=1).relu()
        out = (model.left, model.right)[pick](y)

    def rows(t):
        return F.log_softmax(t.flatten(2).transpose(1, 2).flatten(0, 1), -1)

    return float(F.kl_div(rows(out), rows(ref), log_target=True, reduction='batchmean'))


def test_sensitivity_of_several_outputs_is_the_sum_of_theirs():
    model = _TwoOutputs()
    x = torch.randn(2, 2, 5, 5)
    table = output_sensitivity(model, [x], ['conv'], options=(4,))
    expected = _kl_by_hand(model, x, 4, 0) + _kl_by_hand(model, x, 4, 1)
    assert table['conv'][4] == pytest.approx(expected, rel=1e-5)
    assert _kl_by_hand(model, x, 4, 0) > 0 and _kl_by_hand(model, x, 4, 1) > 0
