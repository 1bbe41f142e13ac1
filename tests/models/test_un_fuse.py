"""Deploy folding of UN / TokenBN into the neighbouring Linear, and the folded
ONNX export."""

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope
from torch import nn

from mmcompress.models.norms import (
    UN,
    ChannelAffine,
    TokenBN,
    export_folded_onnx,
    fuse_un,
)
from mmcompress.quant.export import TensorModeWrapper, export_onnx


def _vit(norm_type, **norm):
    # the classifier builds its default data preprocessor by its bare name
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return _build_vit(norm_type, **norm)


def _build_vit(norm_type, **norm):
    return MODELS.build(
        dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(
                type='mmpretrain.VisionTransformer',
                arch=dict(
                    embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32
                ),
                img_size=16,
                patch_size=4,
                in_channels=1,
                norm_cfg=dict(type=norm_type, **norm),
            ),
            head=dict(
                type='mmpretrain.VisionTransformerClsHead',
                num_classes=5,
                in_channels=16,
            ),
        )
    )


def _train(model, steps=8):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(4, 1, 16, 16), mode='tensor').pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize(
    'norm',
    [
        dict(type='UN', window_size=2, warmup_iters=2, outlier_filtration=True),
        dict(type='TokenBN'),
    ],
)
def test_fuse_folds_every_norm_of_a_trained_vit_exactly(norm):
    torch.manual_seed(0)
    model = _train(_vit(norm.pop('type'), **norm))
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        ref = model(x, mode='tensor')
        plan = fuse_un(model, (x,))
        out = model(x, mode='tensor')
    assert plan == {
        'backbone.layers.0.ln1': 'backbone.layers.0.attn.qkv',
        'backbone.layers.0.ln2': 'backbone.layers.0.ffn.layers.0.0',
        'backbone.layers.1.ln1': 'backbone.layers.1.attn.qkv',
        'backbone.layers.1.ln2': 'backbone.layers.1.ffn.layers.0.0',
        'backbone.ln1': 'head.layers.head',
    }
    assert not any(isinstance(m, (UN, TokenBN)) for m in model.modules())
    assert (out - ref).abs().max().item() <= 1e-5


def test_fuse_hand_computed_weights_and_bias_without_linear_bias():
    norm = UN(2).eval()
    norm.running_var.copy_(torch.tensor([3.0, 0.0]))
    norm.weight.data.copy_(torch.tensor([2.0, 1.0]))
    norm.bias.data.copy_(torch.tensor([1.0, -1.0]))
    linear = nn.Linear(2, 1, bias=False)
    linear.weight.data.copy_(torch.tensor([[1.0, 2.0]]))
    model = nn.Sequential(norm, linear)
    fuse_un(model, (torch.ones(1, 1, 2),))
    s0, s1 = 2 / (3 + 1e-5) ** 0.5, 1 / (1e-5) ** 0.5
    torch.testing.assert_close(model[1].weight, torch.tensor([[s0, 2 * s1]]))
    torch.testing.assert_close(model[1].bias, torch.tensor([1.0 - 2.0]))
    assert isinstance(model[0], nn.Identity)


def test_fuse_affine_fallback_keeps_outputs_of_a_residual_use():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.fc = UN(4), nn.Linear(4, 4)

        def forward(self, x):
            y = self.norm(x)
            return self.fc(y) + y

    torch.manual_seed(1)
    model = Residual()
    model.norm.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(2, 3, 4)
    ref = model(x)
    plan = fuse_un(model, (x,), on_unfoldable='affine')
    assert plan == {'norm': None} and isinstance(model.norm, ChannelAffine)
    torch.testing.assert_close(model(x), ref)


def test_folded_onnx_export_matches_pytorch_in_onnxruntime():
    import onnx
    import onnxruntime

    torch.manual_seed(2)
    model = _train(_vit('UN', window_size=2, warmup_iters=2), steps=4)
    wrapper = TensorModeWrapper(model)
    x = torch.randn(5, 1, 16, 16)
    data = export_folded_onnx(wrapper, x[:1])
    graph = onnx.load_from_string(data).graph
    ops = {node.op_type for node in graph.node}
    # no norm left (the Sqrt in the graph is the attention scale)
    assert not ops & {'ReduceMean', 'LayerNormalization', 'Pow'}
    assert any(isinstance(m, UN) for m in model.modules())  # a copy was folded
    session = onnxruntime.InferenceSession(data, providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': x.numpy()})[0]
    with torch.no_grad():
        ref = wrapper(x).numpy()
    assert abs(got - ref).max() <= 1e-5


def test_folded_vit_graph_is_the_ln_graph_without_its_layernorm_kernels():
    """The premise of the Amdahl bound of benchmarks/un_speed.py: after
    onnxruntime's optimisations the folded UN graph runs exactly the kernels
    of the LN graph but its LayerNormalization ones (nothing left over)."""
    from mmcompress.utils.ort_profile import onnxruntime_op_profiles

    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    ln = TensorModeWrapper(_vit('LN', eps=1e-6)).eval()
    ln_blob = export_onnx(ln, x[:1], quantized=False)
    un = _train(_vit('UN', window_size=2, warmup_iters=2), steps=3)
    folded = export_folded_onnx(TensorModeWrapper(un), x[:1])
    feed = {'input': x.numpy()}
    profiles = onnxruntime_op_profiles(
        dict(ln=ln_blob, un=folded), feed, runs=1, warmup=0
    )
    kernels = {name: prof['nodes'] for name, prof in profiles.items()}
    assert kernels['ln'].pop('LayerNormalization') == 5
    assert kernels['un'] == kernels['ln']
