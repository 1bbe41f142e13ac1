# LBT W6A6G6: the recipe of lbt_w4a4g4_fmnist.py with 6-bit weights,
# activations and gradients (target clipped fraction 1e-3 / 63).
# Train: python tools/train.py configs/quant/mmpretrain/lbt_w6a6g6_fmnist.py
_base_ = ['./lbt_w4a4g4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=6, signed=True),
        a=dict(type='LSQQuantizer', bits=6),
        g=dict(type='LBTGradQuantizer', bits=6, interval='lbt'),
    )
)
