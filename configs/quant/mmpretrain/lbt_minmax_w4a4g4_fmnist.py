# The gamma = 1 (min-max) baseline of LBT: lbt_w4a4g4_fmnist.py with the clip
# fixed at max|g| (stochastic rounding kept). Fixed-clip baselines of the
# paper: --cfg-options model.quant.g.gamma=0.8 (or 0.6); the expected-MSE
# interval: model.quant.g.interval=mse.
# Train: python tools/train.py configs/quant/mmpretrain/lbt_minmax_w4a4g4_fmnist.py
_base_ = ['./lbt_w4a4g4_fmnist.py']

model = dict(
    quant=dict(g=dict(type='LBTGradQuantizer', bits=4, interval='fixed', gamma=1.0))
)
custom_hooks = []
