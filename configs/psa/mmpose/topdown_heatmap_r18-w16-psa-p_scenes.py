# Top-down heatmap student on the garment keypoints
# (configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py) with Polarized
# Self-Attention, parallel layout (PSA_p, official code), after conv1 of every
# ResNet BasicBlock. PosePSAResNet = mmpose's ResNet with mmseg's plugins=
# argument. Everything else is the baseline.
# Train: python tools/train.py (or mmpose's own tools/train.py) \
#            configs/psa/mmpose/topdown_heatmap_r18-w16-psa-p_scenes.py
_base_ = ['../../baselines/mmpose/topdown_heatmap_r18-w16_scenes.py']

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
