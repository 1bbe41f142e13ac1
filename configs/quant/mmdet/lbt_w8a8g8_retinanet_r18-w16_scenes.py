# LBT W8A8G8 RetinaNet on the fashion scenes: the LSQ W8A8 recipe (same layers,
# schedule and float starting point, lsq_w4a4_retinanet_r18-w16_scenes.py) trained
# with 8-bit gradients: the error arriving at each quantized layer's output is
# quantized (stochastic rounding, clip gamma * max|g|, gamma per layer by the LBT
# controller) and the layer's weight and input gradients are computed from it.
# LBTIntervalInitHook skips the optimizer step of the first (walk-down) iteration.
# Emulated in float (docs/quant/grad_quant.md).
# Train: python tools/train.py \
#     configs/quant/mmdet/lbt_w8a8g8_retinanet_r18-w16_scenes.py
_base_ = ['./lsq_w8a8_retinanet_r18-w16_scenes.py']

model = dict(quant=dict(g=dict(type='LBTGradQuantizer', bits=8, interval='lbt')))
custom_hooks = [dict(type='LBTIntervalInitHook')]
