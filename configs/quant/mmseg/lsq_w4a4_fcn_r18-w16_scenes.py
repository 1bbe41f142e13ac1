# W4A4 LSQ FCN (EncoderDecoder) on the fashion scenes: backbone and the FCN head's
# convs quantized (weights and inputs, 4 bits); the stem conv and the pixel
# classifiers (decode_head.conv_seg) stay float by the default rule.
# Fine-tuned from the float baseline checkpoint.
# 1. python tools/train.py configs/baselines/mmseg/fcn_r18-w16_scenes.py
# 2. python tools/train.py configs/quant/mmseg/lsq_w4a4_fcn_r18-w16_scenes.py
_base_ = [
    '../../baselines/mmseg/fcn_r18-w16_scenes.py',
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
load_from = 'work_dirs/fcn_r18-w16_scenes/iter_2000.pth'

# QAT fine-tuning (../_base_/qat_scenes.py): 200 iterations from the float checkpoint.
optim_wrapper = {{_base_.qat_optim_wrapper}}
param_scheduler = {{_base_.qat_param_scheduler}}
max_iters = 200
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
