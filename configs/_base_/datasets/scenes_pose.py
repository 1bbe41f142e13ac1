# Fashion-MNIST garments on scikit-image photos, COCO keypoints: five garment
# keypoints (top_left, top_right, bottom_right, bottom_left, centre) defined by
# the image axes (docs/scenes.md). Rotation augmentation would change which
# mask pixel is extreme, so RandomBBoxTransform keeps rotate_factor=0.
# Generate first: python tools/generate_scenes.py --task pose --split bench
dataset_type = 'FashionScenePoseDataset'
data_mode = 'topdown'
data_root = 'data/scenes/pose_bench/'

codec = dict(type='MSRAHeatmap', input_size=(64, 64), heatmap_size=(32, 32), sigma=2)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='RandomFlip', direction='horizontal'),
    dict(
        type='RandomBBoxTransform',
        shift_factor=0.1,
        scale_factor=(0.8, 1.2),
        rotate_factor=0,
        rotate_prob=0,
    ),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale', padding=1.25),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/keypoints_train.json',
        data_prefix=dict(img='images/train/'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file='annotations/keypoints_val.json',
        data_prefix=dict(img='images/val/'),
        test_mode=True,
        pipeline=val_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/keypoints_val.json',
    nms_mode='none',
)
test_evaluator = val_evaluator
