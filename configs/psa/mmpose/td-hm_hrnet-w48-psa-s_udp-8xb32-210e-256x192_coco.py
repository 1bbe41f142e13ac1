# td-hm_hrnet-w48-psa-p_udp-8xb32-210e-256x192_coco.py with the sequential
# layout (PSA_s).
_base_ = ['./td-hm_hrnet-w48-psa-p_udp-8xb32-210e-256x192_coco.py']

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
