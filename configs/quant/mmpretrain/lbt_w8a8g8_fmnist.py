# LBT W8A8G8: the recipe of lbt_w4a4g4_fmnist.py with 8-bit weights,
# activations and gradients (target clipped fraction 1e-3 / 255).
# Train: python tools/train.py configs/quant/mmpretrain/lbt_w8a8g8_fmnist.py
_base_ = ['./lbt_w4a4g4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
        g=dict(type='LBTGradQuantizer', bits=8, interval='lbt'),
    )
)
