# FreeAnchor (MIL anchor bags, Zhang et al., NeurIPS 2019) on the fashion
# scenes: retinanet_r18-w16_scenes.py with mmdet's FreeAnchorRetinaHead (bags
# of the 50 best-IoU anchors, Mean-max selection, box coder stds 0.1/0.2,
# SmoothL1 beta 0.11 weight 0.75: mmdet's recipe). The baseline of MAL
# (configs/mal/mmdet/mal_retinanet_r18-w16_scenes.py).
# Data: python tools/generate_scenes.py --task det --split bench
_base_ = ['./retinanet_r18-w16_scenes.py']

model = dict(
    bbox_head=dict(
        _delete_=True,
        type='FreeAnchorRetinaHead',
        num_classes=10,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=2,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32],
        ),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.1, 0.1, 0.2, 0.2],
        ),
        loss_bbox=dict(type='SmoothL1Loss', beta=0.11, loss_weight=0.75),
    )
)
