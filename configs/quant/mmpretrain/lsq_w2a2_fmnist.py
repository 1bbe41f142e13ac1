# LSQ W2A2 on Fashion-MNIST: the W4A4 recipe of lsq_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 2-bit
# quantizers.
_base_ = ['./lsq_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=2, signed=True),
        a=dict(type='LSQQuantizer', bits=2),
    )
)
