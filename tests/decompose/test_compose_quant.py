"""Structure changes compose with quantization: a decomposed CNN and a folded
UN ViT go through quantize_ (QAT layer swap), a few training steps and the
ONNX QDQ export, and onnxruntime agrees with PyTorch."""

import torch
from mmengine.registry import MODELS, DefaultScope
from torch import nn

from mmcompress.decompose import DecomposedConv2d, decompose_
from mmcompress.models.norms import fuse_un
from mmcompress.quant import quantize_
from mmcompress.quant.export import (
    TensorModeWrapper,
    compare_with_onnxruntime,
    export_onnx,
    onnxruntime_session,
)

W8A8 = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True),
    a=dict(type='LSQQuantizer', bits=8, signed=True),
)


def _steps(model, batches, call=lambda m, x: m(x)):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for x in batches:
        loss = call(model, x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _agree(model, batches):
    session = onnxruntime_session(export_onnx(model, batches[0][:1]))
    return compare_with_onnxruntime(model, session, batches)


def test_decomposed_model_quantizes_and_exports():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    batches = [torch.randn(16, 1, 12, 12) for _ in range(4)]
    plan = decompose_(model, (batches[0],), 0.5, 'group')
    assert plan
    quantize_(model, W8A8)
    parts = [m for m in model.modules() if isinstance(m, DecomposedConv2d)]
    assert all(type(p).__name__ == 'QuantConv2d' for d in parts for p in d)
    _steps(model, batches)
    result = _agree(model, batches)
    assert result['top1_agreement'] >= 0.99 and result['max_abs_diff'] < 1e-3


def _un_vit():
    return MODELS.build(
        dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(
                type='mmpretrain.VisionTransformer',
                arch=dict(
                    embed_dims=16, num_layers=1, num_heads=2, feedforward_channels=32
                ),
                img_size=12,
                patch_size=4,
                in_channels=1,
                norm_cfg=dict(type='UN', window_size=2, warmup_iters=1),
            ),
            head=dict(
                type='mmpretrain.VisionTransformerClsHead',
                num_classes=5,
                in_channels=16,
            ),
        )
    )


def test_folded_un_vit_quantizes_and_exports():
    torch.manual_seed(1)
    # the classifier builds its default data preprocessor by its bare name:
    # build in the mmpretrain scope, whatever scope earlier tests left
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        vit = _un_vit()
    batches = [torch.randn(16, 1, 12, 12) for _ in range(4)]
    _steps(vit, batches, lambda m, x: m(x, mode='tensor'))
    fuse_un(vit, (batches[0],))
    model = TensorModeWrapper(vit)
    quantize_(model, dict(W8A8, keep_output_float=False))
    _steps(model, batches)
    result = _agree(model, batches)
    assert result['top1_agreement'] >= 0.99 and result['max_abs_diff'] < 1e-3
