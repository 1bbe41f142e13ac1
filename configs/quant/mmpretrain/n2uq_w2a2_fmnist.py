# N2UQ W2A2 on Fashion-MNIST: the W4A4 recipe of n2uq_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 2-bit
# quantizers.
_base_ = ['./n2uq_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='N2UQWeightQuantizer', bits=2),
        a=dict(type='N2UQActQuantizer', bits=2),
    )
)
