# Backbone pretraining for OICR from the same image-level labels (no boxes): the
# OICR config's backbone (first two stages of a half-width ResNet-18), global
# average pooling and a linear layer, multi-label BCE (WSODImageClassifier,
# docs/models/casd.md). Stands in for the ImageNet-pretrained VGG16 of the
# official OICR / CASD code. Evaluated by the image-level classification mAP.
# Train: python tools/train.py configs/wsod/mmdet/imgcls_r18-w32_scenes.py
_base_ = ['./oicr_r18-w32_scenes.py']

model = dict(
    _delete_=True,
    type='WSODImageClassifier',
    data_preprocessor={{_base_.model.data_preprocessor}},
    backbone={{_base_.model.backbone}},
    in_channels=64,
    num_classes=10,
)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ImageLevelLabels'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape')),
]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='ImageLevelAPMetric')]
test_evaluator = val_evaluator

max_iters = 3000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
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
default_hooks = dict(checkpoint=dict(interval=max_iters))
