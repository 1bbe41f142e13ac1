# MSE-interval baseline of LBT: lbt_w4a4g4_fmnist.py with gamma chosen per layer
# and backward from 1.0, 0.95, ..., 0.05 to minimise the expected squared error
# of stochastic rounding on that gradient, clipping included (the MSE criterion
# of ACIQ, Banner et al., NeurIPS 2019, on the gradient itself instead of a
# fitted Laplace prior; docs/quant/grad_quant.md). No controller, no skipped step.
# Train: python tools/train.py configs/quant/mmpretrain/lbt_mse_w4a4g4_fmnist.py
_base_ = ['./lbt_minmax_w4a4g4_fmnist.py']

model = dict(quant=dict(g=dict(interval='mse')))
