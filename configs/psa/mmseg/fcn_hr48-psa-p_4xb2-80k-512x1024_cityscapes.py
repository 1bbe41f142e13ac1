# Cityscapes HRNetV2-W48 FCN (mmseg model zoo recipe, 4 GPUs x 2 images, 80k
# iterations) with Polarized Self-Attention after conv1 of every HRNet BasicBlock
# (the official placement), parallel layout (PSA_p). The ImageNet HRNet-W48 weights
# of the base config load into the plain part; the PSA weights are logged as newly
# initialised (official Kaiming fan-in).
# For a GPU cluster: bash tools/dist_train.sh \
#     configs/psa/mmseg/fcn_hr48-psa-p_4xb2-80k-512x1024_cityscapes.py 4
# (the official PSA results use HRNet-OCR with NVIDIA's recipe, see docs/models/psa.md)
_base_ = 'mmseg::hrnet/fcn_hr48_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmcompress'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        type='SegPSAHRNet',
        plugins=[
            dict(
                cfg=dict(type='PolarizedSelfAttention', mode='parallel'),
                position='after_conv1',
            )
        ],
    )
)
