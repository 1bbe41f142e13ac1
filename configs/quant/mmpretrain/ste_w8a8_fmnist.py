# STE W8A8 on Fashion-MNIST: the W4A4 recipe of ste_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 8-bit
# quantizers.
_base_ = ['./ste_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(
            type='UniformSTEQuantizer',
            bits=8,
            observer='current',
            signed=True,
            per_channel=True,
        ),
        a=dict(type='UniformSTEQuantizer', bits=8, observer='ema'),
    )
)
