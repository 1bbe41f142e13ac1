# fcn_hr48-psa-p_4xb2-80k-512x1024_cityscapes.py with the sequential layout
# (PSA_s, the layout of the official segmentation code).
_base_ = ['./fcn_hr48-psa-p_4xb2-80k-512x1024_cityscapes.py']

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
