# W4A4 LSQ top-down heatmap pose estimator on the fashion scenes: the ResNet
# backbone's convs quantized (weights and inputs, 4 bits); the stem conv and the
# heatmap output conv (head.final_layer) stay float by the default rule; the
# head's ConvTranspose2d layers are not eligible for the swap and stay float.
# Fine-tuned from the float baseline checkpoint.
# 1. python tools/train.py configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py
# 2. python tools/train.py \
#     configs/quant/mmpose/lsq_w4a4_topdown_heatmap_r18-w16_scenes.py
_base_ = [
    '../../baselines/mmpose/topdown_heatmap_r18-w16_scenes.py',
    '../_base_/qat_scenes.py',
]

model = dict(
    _delete_=True,
    type='QuantizedModel',
    model={{_base_.model}},
    quant=dict(
        w=dict(type='LSQQuantizer', bits=4, signed=True),
        a=dict(type='LSQQuantizer', bits=4),
    ),
)
load_from = 'work_dirs/topdown_heatmap_r18-w16_scenes/iter_300.pth'

# QAT fine-tuning (../_base_/qat_scenes.py): 120 iterations from the float checkpoint.
optim_wrapper = {{_base_.qat_optim_wrapper}}
param_scheduler = {{_base_.qat_param_scheduler}}
max_iters = 120
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
