# DKD on PASCAL VOC 2012 (train_aug, 10,582 images; val 1,449), 15-5
# overlapped, step 0: classes 1-15. GPU-cluster recipe of the official setting:
# DeepLabV3 R-101 at output stride 16 (ASPP 6/12/18, 256 channels, no
# auxiliary head), SyncBN, crop 512, batch 32 (tools/dist_train.sh CONFIG 4 at
# 8 images per GPU), SGD Nesterov lr 1e-3 (ASPP and classifiers 10x), wd 1e-4,
# poly 0.9, 60 epochs, AMP, L_mbce (pos_weight 2) + L_ac.
# Data: mmseg's VOC layout with SegmentationClassAug and aug.txt
# (python mmseg/.mim/tools/dataset_converters/voc_aug.py, mmseg docs).
# Whole split: python tools/ciss.py <this config>  (steps by tools/dist_train.sh
# need the step configs run one after the other with load_from as in step1).
_base_ = [
    'mmseg::_base_/models/deeplabv3_r50-d8.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

split = '15-5'
setting = 'overlap'
step = 0
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='IncrementalEncoderDecoder',
    split=split,
    num_classes=20,
    step=step,
    head_type='sigmoid',
    loss_weights=dict(mbce=1.0, kd=5.0, dkd_pos=5.0, dkd_neg=5.0, ac=1.0),
    pretrained='open-mmlab://resnet101_v1c',
    data_preprocessor=dict(size=crop_size),
    # official: backbone BN momentum 0.01 (train_voc.py _set_bn_momentum)
    backbone=dict(
        depth=101,
        dilations=(1, 1, 1, 2),
        strides=(1, 2, 2, 1),
        norm_cfg=dict(norm_cfg, momentum=0.01),
    ),
    decode_head=dict(channels=256, dilations=(1, 6, 12, 18), dropout_ratio=0.0),
    auxiliary_head=None,
)

data_root = 'data/VOCdevkit/VOC2012'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True
    ),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=crop_size),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
_voc = dict(
    type='PascalVOCDataset',
    data_root=data_root,
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
    ann_file='ImageSets/Segmentation/aug.txt',
    pipeline=train_pipeline,
)
_step = dict(type='IncrementalSegDataset', split=split, step=step, setting=setting)
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        _step, dataset=_voc, mode='train', index_file=f'{data_root}/ciss_index.json'
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        _step,
        dataset=dict(
            _voc,
            data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
            ann_file='ImageSets/Segmentation/val.txt',
            pipeline=test_pipeline,
        ),
        mode='test',
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IncrementalIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_epochs = 60
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs
)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, nesterov=True, weight_decay=1e-4),
    paramwise_cfg=dict(
        custom_keys=dict(decode_head=dict(lr_mult=10.0), classifier=dict(lr_mult=10.0))
    ),
)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=max_epochs,
        by_epoch=True,
        convert_to_iter_based=True,
    )
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=max_epochs),
)
log_processor = dict(by_epoch=True)
randomness = dict(seed=1)
