# GFL student on the fashion scenes: the backbone/neck of
# retinanet_r18-w16_scenes.py with a GFL head (quality focal loss, distribution
# focal loss, ATSS assignment); trained from scratch.
# Data: python tools/generate_scenes.py --task det --split bench
_base_ = ['./retinanet_r18-w16_scenes.py']

model = dict(
    type='GFL',
    bbox_head=dict(
        _delete_=True,
        type='GFLHead',
        num_classes=10,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=4,
            scales_per_octave=1,
            strides=[8, 16, 32],
        ),
        loss_cls=dict(
            type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0
        ),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        reg_max=16,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
    ),
    train_cfg=dict(
        _delete_=True,
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    ),
)

# GFL learns faster than RetinaNet: 800 iterations of 8 images (4 passes over
# the bench training images).
max_iters = 800
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
