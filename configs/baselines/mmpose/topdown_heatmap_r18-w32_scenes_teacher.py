# Top-down heatmap teacher for the garment keypoints:
# topdown_heatmap_r18-w16_scenes.py at twice the width (32/64/128/256 backbone,
# 128-channel deconvolutions).
_base_ = ['./topdown_heatmap_r18-w16_scenes.py']

model = dict(
    backbone=dict(base_channels=32),
    head=dict(in_channels=256, deconv_out_channels=(128, 128, 128)),
)
