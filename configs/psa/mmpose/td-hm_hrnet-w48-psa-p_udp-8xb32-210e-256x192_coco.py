# COCO top-down UDP HRNet-W48 256x192 (mmpose model zoo recipe, 8 GPUs x 32, 210
# epochs) with PSA_p after conv1 of every HRNet BasicBlock: the setting of the
# paper's UDP-Pose-PSA(p) W48 256x192 (78.9 AP in the official README).
# For a GPU cluster: bash tools/dist_train.sh \
#     configs/psa/mmpose/td-hm_hrnet-w48-psa-p_udp-8xb32-210e-256x192_coco.py 8
_base_ = (
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_hrnet-w48_udp-8xb32-210e_coco-256x192.py'
)
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='PosePSAHRNet',
        plugins=[
            dict(
                cfg=dict(type='PolarizedSelfAttention', mode='parallel'),
                position='after_conv1',
            )
        ],
    )
)
