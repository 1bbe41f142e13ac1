# W3A3 post-training quantization of the Fashion-MNIST student: the W4A4 recipe
# (MSE ranges, unit-wise reconstruction of the residual blocks) at 3 bits.
#   python tools/ptq.py configs/quant/mmpretrain/ptq_w3a3_fmnist.py FP32.pth
_base_ = ['./ptq_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=3, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=3),
    )
)
