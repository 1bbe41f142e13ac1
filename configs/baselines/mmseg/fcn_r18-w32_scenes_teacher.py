# FCN teacher on the fashion scenes: fcn_r18-w16_scenes.py at twice the width
# (stem 32, stages 32/64/128/256) with a 128-channel head.
_base_ = ['./fcn_r18-w16_scenes.py']

model = dict(
    backbone=dict(stem_channels=32, base_channels=32),
    decode_head=dict(in_channels=256, channels=128),
)
