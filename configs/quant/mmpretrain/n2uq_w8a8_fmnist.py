# N2UQ W8A8 on Fashion-MNIST: the W4A4 recipe of n2uq_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 8-bit
# quantizers.
_base_ = ['./n2uq_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='N2UQWeightQuantizer', bits=8),
        a=dict(type='N2UQActQuantizer', bits=8),
    )
)
