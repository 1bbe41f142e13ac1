# Backbone pretraining for OICR on Fashion-MNIST classification (the garments'
# own 55k labelled 28x28 items, no scenes and no boxes): it stands in for the
# ImageNet-pretrained VGG16 of the official OICR / CASD code
# (docs/models/casd.md). The OICR config's backbone (mmdet's ResNet, first two
# stages, half width) with global average pooling and a linear classifier; items
# resized to 28-64 px (the scenes' garment sizes), grey replicated to the three
# channels by the normalisation (the scenes' mean / std), padded with black.
# Train: python tools/train.py configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py
_base_ = [
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/default_runtime_cls.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmdet.ResNet',
        depth=18,
        num_stages=2,
        base_channels=32,
        strides=(1, 2),
        dilations=(1, 1),
        out_indices=(1,),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None,
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ),
)
# (N, 1, H, W) - (3, 1, 1): the grey item becomes three equal channels,
# normalised as the scenes' RGB images; batches padded to a multiple of 32
data_preprocessor = dict(
    num_classes=10,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=False,
    pad_size_divisor=32,
)
train_pipeline = [
    dict(type='RandomResize', scale=(44, 44), ratio_range=(0.64, 1.45)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='Resize', scale=(44, 44)), dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    # items of different sizes: the preprocessor pads the batch
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(pipeline=train_pipeline),
)
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline)
)
test_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline)
)

max_iters = 1500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
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
    checkpoint=dict(by_epoch=False, interval=max_iters, save_best=None),
    logger=dict(interval=50),
)
log_processor = dict(by_epoch=False)
