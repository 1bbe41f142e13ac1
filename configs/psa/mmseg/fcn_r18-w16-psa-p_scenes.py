# FCN student on the fashion scenes (configs/baselines/mmseg/fcn_r18-w16_scenes.py)
# with Polarized Self-Attention, parallel layout (PSA_p, official code), after conv1
# of every ResNet BasicBlock (the official placement in HRNet BasicBlocks).
# SegPSAResNet = mmseg's ResNet whose BasicBlocks take mmcv plugins; deep_stem=True
# is what ResNetV1c sets. Everything else is the baseline.
# Train: python tools/train.py (or mmseg's own tools/train.py) \
#            configs/psa/mmseg/fcn_r18-w16-psa-p_scenes.py
_base_ = ['../../baselines/mmseg/fcn_r18-w16_scenes.py']

model = dict(
    backbone=dict(
        type='SegPSAResNet',
        deep_stem=True,
        plugins=[
            dict(
                cfg=dict(type='PolarizedSelfAttention', mode='parallel'),
                position='after_conv1',
            )
        ],
    )
)
