# EWGS W8A8 on Fashion-MNIST: the W4A4 recipe of ewgs_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 8-bit
# quantizers.
_base_ = ['./ewgs_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='EWGSQuantizer', bits=8, role='weight', delta=0.0),
        a=dict(type='EWGSQuantizer', bits=8, role='activation', delta=0.0),
    )
)
