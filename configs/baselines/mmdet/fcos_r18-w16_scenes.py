# FCOS student on the fashion scenes: the backbone/neck of
# retinanet_r18-w16_scenes.py with an FCOS head (points, centerness on the
# regression branch, norm_on_bbox, center sampling, GIoU: the mmdet "tricks"
# recipe, GN in the head); trained from scratch. Object size ranges are scaled to
# the 128-pixel images (P3 < 32 <= P4 < 64 <= P5).
# Data: python tools/generate_scenes.py --task det --split bench
_base_ = ['./retinanet_r18-w16_scenes.py']

model = dict(
    type='FCOS',
    bbox_head=dict(
        _delete_=True,
        type='FCOSHead',
        num_classes=10,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        strides=[8, 16, 32],
        regress_ranges=((-1, 32), (32, 64), (64, 1e8)),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0
        ),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0
        ),
    ),
    train_cfg=dict(_delete_=True),
)
