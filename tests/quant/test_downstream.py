"""The transform on real OpenMMLab models (tiny inline configs): mmpretrain,
mmdet (including the head), mmseg and mmpose. Each model keeps its class, the
default float layers are the stem conv and the prediction layers, a training
forward initializes the quantizers and gradients reach them, and a float
checkpoint loads with the quantizer keys reported missing."""

import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import load_checkpoint

import mmcompress  # noqa: F401
from mmcompress.quant import (
    QuantConv2d,
    QuantConvTranspose2d,
    QuantLinear,
    eligible_layers,
)

W4A4 = dict(
    w=dict(type='LSQQuantizer', bits=4, signed=True),
    a=dict(type='LSQQuantizer', bits=4),
)

CLS = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        in_channels=1,
        stem_channels=8,
        base_channels=8,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=32,
        loss=dict(type='CrossEntropyLoss'),
    ),
)

DET = dict(
    type='RetinaNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0, 0, 0],
        std=[255, 255, 255],
        pad_size_divisor=32,
    ),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=8,
        num_stages=4,
        out_indices=(1, 2, 3),
        norm_cfg=dict(type='BN'),
    ),
    neck=dict(
        type='FPN',
        in_channels=[16, 32, 64],
        out_channels=16,
        start_level=0,
        add_extra_convs='on_input',
        num_outs=3,
    ),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=3,
        in_channels=16,
        stacked_convs=1,
        feat_channels=16,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=1,
            ratios=[1.0],
            strides=[8, 16, 32],
        ),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4
        ),
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0
        ),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    ),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1,
        ),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    ),
    test_cfg=dict(
        nms_pre=100,
        min_bbox_size=0,
        score_thr=0.0,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=10,
    ),
)

SEG = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[0, 0, 0], std=[255, 255, 255], size=(32, 32)
    ),
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=8,
        base_channels=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=dict(type='BN'),
    ),
    decode_head=dict(
        type='FCNHead',
        in_channels=64,
        in_index=3,
        channels=16,
        num_convs=1,
        concat_input=False,
        num_classes=4,
        norm_cfg=dict(type='BN'),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss'),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=32,
        in_index=2,
        channels=8,
        num_convs=1,
        concat_input=False,
        num_classes=4,
        norm_cfg=dict(type='BN'),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)

POSE = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor', mean=[0, 0, 0], std=[255, 255, 255]
    ),
    backbone=dict(
        type='ResNet', depth=18, base_channels=8, strides=(1, 2, 2, 1), out_indices=(3,)
    ),
    head=dict(
        type='HeatmapHead',
        in_channels=64,
        out_channels=5,
        deconv_out_channels=(16,),
        deconv_kernel_sizes=(4,),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
    ),
    test_cfg=dict(flip_test=False),
)

CASES = {
    'mmpretrain': (CLS, (2, 1, 28, 28), 'backbone.conv1', ['head.fc']),
    'mmdet': (
        DET,
        (1, 3, 64, 64),
        'backbone.conv1',
        ['bbox_head.retina_cls', 'bbox_head.retina_reg'],
    ),
    'mmseg': (
        SEG,
        (2, 3, 32, 32),
        'backbone.stem.0',
        ['decode_head.conv_seg', 'auxiliary_head.conv_seg'],
    ),
    'mmpose': (POSE, (2, 3, 64, 64), 'backbone.conv1', ['head.final_layer']),
}


def _build(scope, cfg):
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(ConfigDict(cfg))


def _output_sum(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.float().sum()
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    return sum(_output_sum(o) for o in outputs)


@pytest.mark.parametrize('scope', sorted(CASES))
def test_transform_on_downstream_model(scope, tmp_path):
    float_cfg, shape, stem, outputs = CASES[scope]
    torch.manual_seed(0)
    float_model = _build(scope, copy.deepcopy(float_cfg))
    torch.save({'state_dict': float_model.state_dict()}, tmp_path / 'float.pth')
    model = _build(
        scope, dict(type='QuantizedModel', model=copy.deepcopy(float_cfg), quant=W4A4)
    )
    assert type(model) is type(float_model)
    float_layers = list(eligible_layers(model))
    assert float_layers == [stem] + outputs
    quantized = [
        m
        for m in model.modules()
        if isinstance(m, (QuantConv2d, QuantConvTranspose2d, QuantLinear))
    ]
    assert len(quantized) > 5
    assert len(quantized) + len(float_layers) == len(eligible_layers(float_model))
    assert set(float_model.state_dict()) <= set(model.state_dict())

    load_checkpoint(model, str(tmp_path / 'float.pth'), strict=False)
    for name, module in float_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], module)
    model.train()
    out = model(torch.rand(*shape) * 2 - 1, None, mode='tensor')
    _output_sum(out).backward()
    # tensor mode runs everything but mmseg's auxiliary head (loss-only)
    ran = [
        m
        for n, m in model.named_modules()
        if isinstance(m, (QuantConv2d, QuantConvTranspose2d))
        and not n.startswith('auxiliary_head')
    ]
    if scope == 'mmpose':  # the heatmap head's deconv is quantized too
        assert isinstance(model.head.deconv_layers[0], QuantConvTranspose2d)
    assert len(ran) > 5
    assert all(m.act_quantizer.initialized.item() == 1 for m in ran)
    assert all(m.weight_quantizer.step.grad is not None for m in ran)


def test_detector_loss_and_predict_with_quantized_head():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    model = _build(
        'mmdet', dict(type='QuantizedModel', model=copy.deepcopy(DET), quant=W4A4)
    )
    head_conv = model.bbox_head.cls_convs[0].conv
    assert isinstance(head_conv, QuantConv2d)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(64, 64),
            ori_shape=(64, 64),
            pad_shape=(64, 64),
            scale_factor=(1, 1),
            batch_input_shape=(64, 64),
        )
    )
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8.0, 8.0, 40.0, 40.0]]), labels=torch.tensor([1])
    )
    losses = model(torch.rand(1, 3, 64, 64), [sample], mode='loss')
    total, _ = model.parse_losses(losses)
    total.backward()
    assert head_conv.act_quantizer.step.grad is not None
    model.eval()
    with torch.no_grad():
        result = model(torch.rand(1, 3, 64, 64), [sample], mode='predict')
    assert result[0].pred_instances.bboxes.shape[1] == 4
