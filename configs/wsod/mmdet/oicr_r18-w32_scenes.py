# OICR (MIDN + 2 refinement streams) on the fashion scenes from image-level labels
# only, on deterministic sliding-window + Felzenszwalb proposals
# (docs/models/casd.md). The first two stages of a half-width ResNet-18 (base
# width 32; RoIs on the 64-channel stride-8 level), trained from scratch.
# Data: python tools/generate_scenes.py --task det --split bench
# Train: python tools/train.py configs/wsod/mmdet/oicr_r18-w32_scenes.py
_base_ = [
    '../../_base_/datasets/scenes_det.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

base_width = 32
model = dict(
    type='OICR',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
    ),
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=2,
        base_channels=base_width,
        strides=(1, 2),
        dilations=(1, 1),
        out_indices=(0, 1),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None,
    ),
    roi_extractor=dict(
        type='SingleRoIExtractor',
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=1),
        out_channels=base_width * 2,
        featmap_strides=[8],
    ),
    roi_level=-1,
    head=dict(
        type='OICRHead',
        in_channels=base_width * 2,
        fc_channels=128,
        num_classes=10,
        num_refine=2,
    ),
    # the views CASD distils across; the plain OICR baseline is trained on the
    # same views so that the CASD losses are the only difference
    view_scales=(1.0, 0.75),
    view_flip=True,
    # proposals drawn per image and iteration in training (all at test time)
    train_proposals=128,
    test_cfg=dict(
        score_thr=1e-4, nms=dict(type='nms', iou_threshold=0.3), max_per_img=100
    ),
)

proposals = dict(type='WSODProposals')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ImageLevelLabels'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    proposals,
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    proposals,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    batch_size=4,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(pipeline=train_pipeline),
)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='VOCMetric', metric='mAP', iou_thrs=[0.5], eval_mode='area'),
    dict(type='CorLocMetric', iou_thr=0.5),
    # the MIDN's image-level classification: does the detector classify at all
    dict(type='ImageLevelAPMetric'),
]
test_evaluator = val_evaluator

max_iters = 600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4),
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
randomness = dict(seed=0)
