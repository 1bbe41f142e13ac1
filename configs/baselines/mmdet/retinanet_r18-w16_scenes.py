# RetinaNet student on the fashion scenes: ResNet-18 at a quarter of the usual
# width (stage widths 16/32/64/128), FPN P3-P5 with 64 channels, two stacked head
# convs; trained from scratch (no pretrained weights exist offline).
# Data: python tools/generate_scenes.py --task det --split bench
# Train: python tools/train.py configs/baselines/mmdet/retinanet_r18-w16_scenes.py
_base_ = [
    '../../_base_/datasets/scenes_det.py',
    'mmdet::_base_/default_runtime.py',
    'mmdet::_base_/models/retinanet_r50_fpn.py',
]
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

# mmdet's RetinaNet (data preprocessor, focal + L1 losses, box coder, MaxIoU
# assignment, NMS) with a quarter-width ResNet-18 from scratch, a 3-level
# 64-channel FPN from P3 and a two-conv head for 10 classes.
base_width = 16
neck_channels = 64
model = dict(
    backbone=dict(
        depth=18,
        base_channels=base_width,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None,
    ),
    neck=dict(
        in_channels=[base_width * 2, base_width * 4, base_width * 8],
        out_channels=neck_channels,
        start_level=0,
        num_outs=3,
    ),
    bbox_head=dict(
        num_classes=10,
        in_channels=neck_channels,
        stacked_convs=2,
        feat_channels=neck_channels,
        anchor_generator=dict(octave_base_scale=2, strides=[8, 16, 32]),
    ),
    test_cfg=dict(max_per_img=50),
)

# Iteration-based: 1,600 iterations of 8 images (8 passes over the 1,600 bench
# training images; RetinaNet from scratch is a slow starter: at 400 iterations
# the w32 teacher is no better than the student), a few CPU minutes
# (docs/scenes.md).
max_iters = 1600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
train_dataloader = dict(
    sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=None
)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 50,
        eta_min_ratio=0.01,
        by_epoch=False,
        begin=50,
        end=max_iters,
    ),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
)
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=8)

# fixed seed: reruns of the stock tool reproduce the documented numbers
randomness = dict(seed=0)
