# W8A8 post-training quantization of the scenes FCN (per-channel weights, min-max
# ranges from 256 training images; no training). The calibration images go
# through the test pipeline (no flip), so a seed fixes them exactly (the
# onnxruntime anchor of benchmarks/ptq_scenes.py reads the same ones):
#   python tools/ptq.py configs/quant/mmseg/ptq_w8a8_fcn_r18-w16_scenes.py \
#       FLOAT.pth --out ptq.pth
#   python tools/test.py configs/quant/mmseg/ptq_w8a8_fcn_r18-w16_scenes.py ptq.pth
_base_ = ['./lsq_w8a8_fcn_r18-w16_scenes.py']

model = dict(
    quant=dict(w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True))
)
ptq = dict(
    num_images=256,
    method='rtn',
    calib_dataloader=dict(
        batch_size=8,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='FashionSceneSegDataset',
            data_root='data/scenes/seg_bench/',
            data_prefix=dict(img_path='images/train', seg_map_path='labels/train'),
            pipeline={{_base_.test_pipeline}},
        ),
    ),
)
