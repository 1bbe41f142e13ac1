"""DistillModel with one model of each downstream package (tiny configs).

For each: a training step with a recorded student/teacher pair, the teacher
untouched, and the plain student checkpoint loaded by the package's stock
``init_*`` API giving the same outputs as the student inside DistillModel.
"""

import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData

from mmcompress.distill import DistillModel, save_student_checkpoint


def _resnet(width, depth=18, **kwargs):
    return dict(
        type='ResNet',
        depth=depth,
        base_channels=width,
        num_stages=4,
        out_indices=(1, 2, 3),
        **kwargs,
    )


def _run(scope, *args):
    # the default scope is restored afterwards (other tests depend on it)
    with DefaultScope.overwrite_default_scope(scope):
        return _run_in_scope(scope, *args)


def _run_in_scope(
    scope, student, teacher, distill, inputs, samples, init_fn, tmp_path, input_shape
):
    from mmcompress.registry import MODELS

    with torch.no_grad():
        torch.manual_seed(1)
        teacher_model = MODELS.build(copy.deepcopy(teacher))
    ckpt = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher_model.state_dict()}, ckpt)
    torch.manual_seed(0)
    model = DistillModel(
        student=copy.deepcopy(student),
        teacher=dict(config=copy.deepcopy(teacher), checkpoint=str(ckpt)),
        distill=distill,
        input_shape=input_shape,
    )
    before = {k: v.clone() for k, v in model.teachers['teacher'].state_dict().items()}
    optim = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    losses = model(inputs, samples, mode='loss')
    total, log_vars = model.parse_losses(losses)
    assert all(f'loss_distill_{k}' in log_vars for k in distill)
    assert all(torch.isfinite(v) for v in log_vars.values())
    total.backward()
    optim.step()
    for key, value in model.teachers['teacher'].state_dict().items():
        assert torch.equal(value, before[key]), key

    student_path = tmp_path / 'student.pth'
    save_student_checkpoint(
        model.student,
        str(student_path),
        dict(dataset_meta=dict(classes=('a', 'b', 'c', 'd'))),
    )
    plain = init_fn(
        Config(dict(model=copy.deepcopy(student), default_scope=scope)),
        str(student_path),
        device='cpu',
    )
    model.eval()
    with torch.no_grad():
        expected = model(inputs, samples, mode='tensor')
        got = plain(inputs, samples, mode='tensor')
    flat = [t for t in _flatten(expected)]
    assert flat and len(flat) == len(_flatten(got))
    for e, g in zip(flat, _flatten(got)):
        torch.testing.assert_close(g, e)
    return model


def _flatten(value):
    if isinstance(value, torch.Tensor):
        return [value]
    return [t for v in value for t in _flatten(v)]


def test_mmpretrain_classifier(tmp_path):
    from mmpretrain.apis import init_model
    from mmpretrain.structures import DataSample

    def classifier(width):
        return dict(
            type='ImageClassifier',
            backbone=dict(
                type='ResNet_CIFAR',
                depth=18,
                base_channels=width,
                stem_channels=width,
                in_channels=1,
                out_indices=(3,),
            ),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=width * 8),
        )

    inputs = torch.randn(2, 1, 16, 16)
    samples = [DataSample().set_gt_label(i) for i in (1, 3)]
    model = _run(
        'mmpretrain',
        classifier(4),
        classifier(8),
        dict(
            dkd=dict(
                student='head.fc', teacher='head.fc', loss=dict(type='DecoupledKDLoss')
            ),
            hint=dict(
                student='backbone.layer3',
                teacher='backbone.layer3',
                loss=dict(type='FeatureMSELoss'),
            ),
        ),
        inputs,
        samples,
        init_model,
        tmp_path,
        (1, 16, 16),
    )
    # same (default) preprocessing: the teacher reuses the student's inputs
    assert len(model.data_preprocessor.teachers) == 0


def test_mmdet_detector(tmp_path):
    pytest.importorskip('mmdet')
    from mmdet.apis import init_detector

    def init_fn(cfg, checkpoint, device):
        return init_detector(cfg, checkpoint, palette='random', device=device)

    from mmdet.structures import DetDataSample

    def retinanet(width, neck):
        return dict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor', pad_size_divisor=32),
            backbone=_resnet(width),
            neck=dict(
                type='FPN',
                in_channels=[width * 2, width * 4, width * 8],
                out_channels=neck,
                start_level=0,
                num_outs=3,
            ),
            bbox_head=dict(
                type='RetinaHead',
                num_classes=3,
                in_channels=neck,
                stacked_convs=1,
                feat_channels=neck,
                anchor_generator=dict(
                    type='AnchorGenerator',
                    octave_base_scale=4,
                    scales_per_octave=1,
                    ratios=[1.0],
                    strides=[8, 16, 32],
                ),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                loss_cls=dict(type='FocalLoss', use_sigmoid=True),
                loss_bbox=dict(type='L1Loss'),
            ),
            train_cfg=dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.4,
                    min_pos_iou=0,
                ),
                sampler=dict(type='PseudoSampler'),
                allowed_border=-1,
                pos_weight=-1,
                debug=False,
            ),
            test_cfg=dict(
                nms_pre=100,
                score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.5),
                max_per_img=10,
            ),
        )

    meta = dict(
        img_shape=(64, 64),
        ori_shape=(64, 64),
        pad_shape=(64, 64),
        batch_input_shape=(64, 64),
        scale_factor=(1.0, 1.0),
    )
    samples = []
    for i in range(2):
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4.0, 6.0, 40.0, 50.0]]) + i, labels=torch.tensor([i])
        )
        samples.append(sample)
    model = _run(
        'mmdet',
        retinanet(4, 16),
        retinanet(8, 32),
        dict(fpn=dict(student='neck', teacher='neck', loss=dict(type='PKDLoss'))),
        torch.randn(2, 3, 64, 64),
        samples,
        init_fn,
        tmp_path,
        (3, 64, 64),
    )
    assert len(model.adapters['fpn'].layers) == 3  # one per FPN level


def test_mmseg_segmentor(tmp_path):
    pytest.importorskip('mmseg')
    from mmseg.apis import init_model
    from mmseg.structures import SegDataSample

    def fcn(width):
        return dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=_resnet(width, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
            decode_head=dict(
                type='FCNHead',
                in_channels=width * 8,
                in_index=2,
                channels=width * 2,
                num_convs=1,
                num_classes=3,
                dropout_ratio=0.0,
                align_corners=False,
            ),
            train_cfg=dict(),
            test_cfg=dict(mode='whole'),
        )

    samples = []
    for _ in range(2):
        sample = SegDataSample(
            metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32), pad_shape=(32, 32))
        )
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 32, 32)))
        samples.append(sample)
    _run(
        'mmseg',
        fcn(4),
        fcn(8),
        dict(
            logits=dict(
                student='decode_head.conv_seg',
                teacher='decode_head.conv_seg',
                loss=dict(type='ChannelWiseDivergenceLoss'),
            )
        ),
        torch.randn(2, 3, 64, 64),
        samples,
        init_model,
        tmp_path,
        (3, 64, 64),
    )


def test_mmpose_estimator(tmp_path):
    pytest.importorskip('mmpose')
    from mmpose.apis import init_model
    from mmpose.structures import PoseDataSample

    codec = dict(
        type='MSRAHeatmap', input_size=(64, 64), heatmap_size=(16, 16), sigma=2
    )

    def topdown(width):
        return dict(
            type='TopdownPoseEstimator',
            data_preprocessor=dict(type='PoseDataPreprocessor'),
            backbone=dict(
                type='ResNet',
                depth=18,
                base_channels=width,
                strides=(1, 2, 2, 1),
                out_indices=(3,),
            ),
            head=dict(
                type='HeatmapHead',
                in_channels=width * 8,
                out_channels=3,
                deconv_out_channels=(width * 2, width * 2),
                deconv_kernel_sizes=(4, 4),
                loss=dict(type='KeypointMSELoss', use_target_weight=True),
                decoder=codec,
            ),
            test_cfg=dict(flip_test=False),
        )

    samples = []
    for _ in range(2):
        sample = PoseDataSample(metainfo=dict(input_size=(64, 64)))
        sample.gt_fields = PixelData(heatmaps=torch.rand(3, 16, 16))
        sample.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, 3))
        samples.append(sample)
    _run(
        'mmpose',
        topdown(4),
        topdown(8),
        dict(
            heatmap=dict(
                student='head', teacher='head', loss=dict(type='FeatureMSELoss')
            )
        ),
        torch.randn(2, 3, 64, 64),
        samples,
        init_model,
        tmp_path,
        (3, 64, 64),
    )
