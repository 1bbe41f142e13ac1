# W4A4 LSQ RetinaNet on the fashion scenes, INCLUDING the head: backbone, FPN and
# the RetinaHead's stacked cls/reg convs are quantized (weights and inputs, 4 bits);
# the stem conv and the two prediction convs (retina_cls, retina_reg) stay float
# by the default rule. Fine-tuned from the float baseline checkpoint.
# 1. python tools/train.py configs/baselines/mmdet/retinanet_r18-w16_scenes.py
# 2. python tools/train.py configs/quant/mmdet/lsq_w4a4_retinanet_r18-w16_scenes.py
# 3. python tools/test.py configs/quant/mmdet/lsq_w4a4_retinanet_r18-w16_scenes.py \
#        work_dirs/lsq_w4a4_retinanet_r18-w16_scenes/iter_150.pth
_base_ = [
    '../../baselines/mmdet/retinanet_r18-w16_scenes.py',
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
load_from = 'work_dirs/retinanet_r18-w16_scenes/iter_1600.pth'

# QAT fine-tuning (../_base_/qat_scenes.py): 150 iterations from the float checkpoint.
optim_wrapper = {{_base_.qat_optim_wrapper}}
param_scheduler = {{_base_.qat_param_scheduler}}
max_iters = 150
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
