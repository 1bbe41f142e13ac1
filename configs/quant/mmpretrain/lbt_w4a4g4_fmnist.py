# LBT (Kim et al., ECCV 2024): W4A4 LSQ (lsq_w4a4_fmnist.py: same layers,
# float start, optimizer and schedule) trained with 4-bit gradients: the error
# arriving at each quantized layer's output is quantized (stochastic rounding,
# 2^b - 1 symmetric levels, clip gamma * max|g|) and the layer's weight and
# input gradients are computed from it. gamma per layer: the LBT controller
# (walk-down on the first iteration, whose optimizer step LBTIntervalInitHook
# skips; then +-1e-3 per backward towards a clipped fraction of 1e-3 / 15).
# Emulated in float (docs/quant/grad_quant.md).
# Train: python tools/train.py configs/quant/mmpretrain/lbt_w4a4g4_fmnist.py
_base_ = ['./lsq_w4a4_fmnist.py']

model = dict(quant=dict(g=dict(type='LBTGradQuantizer', bits=4, interval='lbt')))
custom_hooks = [dict(type='LBTIntervalInitHook')]
