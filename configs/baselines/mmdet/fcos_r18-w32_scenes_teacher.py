# FCOS teacher on the fashion scenes: fcos_r18-w16_scenes.py at twice the
# backbone width (32/64/128/256), 128-channel FPN and head.
_base_ = ['./fcos_r18-w16_scenes.py']

model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[64, 128, 256], out_channels=128),
    bbox_head=dict(in_channels=128, feat_channels=128, stacked_convs=2),
)
