# Fixed-clip baseline of LBT (the paper's gamma = 0.6 row): lbt_w4a4g4_fmnist.py
# with the clip fixed at 0.6 * max|g| in every layer and backward (stochastic
# rounding kept, no controller, no skipped step).
# Train: python tools/train.py configs/quant/mmpretrain/lbt_gamma06_w4a4g4_fmnist.py
_base_ = ['./lbt_minmax_w4a4g4_fmnist.py']

model = dict(quant=dict(g=dict(gamma=0.6)))
