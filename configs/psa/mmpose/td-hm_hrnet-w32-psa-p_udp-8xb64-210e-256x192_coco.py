# COCO top-down UDP HRNet-W32 256x192 (mmpose model zoo recipe, 8 GPUs x 64, 210
# epochs) with Polarized Self-Attention after conv1 of every HRNet BasicBlock,
# parallel layout (PSA_p, the layout of the paper's best pose numbers,
# UDP-Pose-PSA). The ImageNet HRNet-W32 weights of the base config load into the
# plain part; the PSA weights are logged as newly initialised.
# For a GPU cluster: bash tools/dist_train.sh \
#     configs/psa/mmpose/td-hm_hrnet-w32-psa-p_udp-8xb64-210e-256x192_coco.py 8
_base_ = (
    'mmpose::body_2d_keypoint/topdown_heatmap/coco/'
    'td-hm_hrnet-w32_udp-8xb64-210e_coco-256x192.py'
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
