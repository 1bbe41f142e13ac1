# LBT W4A4G4 RetinaNet on the fashion scenes: the LSQ W4A4 recipe
# (lsq_w4a4_retinanet_r18-w16_scenes.py) with 4-bit LBT gradients, as
# lbt_w8a8g8_retinanet_r18-w16_scenes.py (docs/quant/grad_quant.md).
# Train: python tools/train.py \
#     configs/quant/mmdet/lbt_w4a4g4_retinanet_r18-w16_scenes.py
_base_ = ['./lsq_w4a4_retinanet_r18-w16_scenes.py']

model = dict(quant=dict(g=dict(type='LBTGradQuantizer', bits=4, interval='lbt')))
custom_hooks = [dict(type='LBTIntervalInitHook')]
