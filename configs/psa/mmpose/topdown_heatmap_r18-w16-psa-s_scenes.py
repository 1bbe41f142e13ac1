# topdown_heatmap_r18-w16-psa-p_scenes.py with the sequential layout (PSA_s,
# official code).
_base_ = ['./topdown_heatmap_r18-w16-psa-p_scenes.py']

model = dict(
    backbone=dict(
        plugins=[
            dict(
                cfg=dict(type='PolarizedSelfAttention', mode='sequential'),
                position='after_conv1',
            )
        ]
    )
)
