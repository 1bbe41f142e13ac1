# Top-down heatmap teacher for the garment keypoints with Polarized
# Self-Attention: configs/baselines/mmpose/topdown_heatmap_r18-w32_scenes_teacher.py
# (R-18 at twice the student's width) with PSA_p (official code) after conv1 of
# every BasicBlock. Teacher of
# configs/distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py.
# Train: python tools/train.py \
#     configs/psa/mmpose/topdown_heatmap_r18-w32-psa-p_scenes_teacher.py
_base_ = ['../../baselines/mmpose/topdown_heatmap_r18-w32_scenes_teacher.py']

model = dict(
    backbone=dict(
        type='PosePSAResNet',
        plugins=[
            dict(
                cfg=dict(type='PolarizedSelfAttention', mode='parallel'),
                position='after_conv1',
            )
        ],
    )
)
