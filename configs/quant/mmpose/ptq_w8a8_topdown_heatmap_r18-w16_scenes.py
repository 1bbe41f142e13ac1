# W8A8 post-training quantization of the scenes top-down heatmap pose model
# (per-channel weights, min-max ranges from 256 training crops; no training). The
# layers are those of the QAT configs: the backbone convs and the head deconvs;
# the stem conv and the heatmap conv (head.final_layer) stay float. The
# calibration crops go through the val pipeline (no flip or box jitter), so a
# seed fixes them exactly:
#   python tools/ptq.py \
#       configs/quant/mmpose/ptq_w8a8_topdown_heatmap_r18-w16_scenes.py \
#       FLOAT.pth --out ptq.pth
#   python tools/test.py \
#       configs/quant/mmpose/ptq_w8a8_topdown_heatmap_r18-w16_scenes.py ptq.pth
_base_ = ['./lsq_w8a8_topdown_heatmap_r18-w16_scenes.py']

model = dict(
    quant=dict(w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True))
)
ptq = dict(
    num_images=256,
    method='rtn',
    calib_dataloader=dict(
        batch_size=32,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='FashionScenePoseDataset',
            data_root='data/scenes/pose_bench/',
            data_mode='topdown',
            ann_file='annotations/keypoints_train.json',
            data_prefix=dict(img='images/train/'),
            pipeline={{_base_.val_pipeline}},
        ),
    ),
)
