# Post-training quantization, W8A8, of the Fashion-MNIST student (no training):
# the QAT model of the LSQ configs (first conv and fc float) with per-channel
# 8-bit weights, its steps set from 1024 training images by observers.
#   python tools/ptq.py configs/quant/mmpretrain/ptq_w8a8_fmnist.py FP32.pth \
#       --out ptq_w8a8.pth
#   python tools/test.py configs/quant/mmpretrain/ptq_w8a8_fmnist.py ptq_w8a8.pth
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=8),
    )
)
# tools/ptq.py settings (ignored by tools/train.py and tools/test.py)
ptq = dict(
    num_images=1024,
    weight_observer=dict(type='MinMaxObserver'),
    act_observer=dict(type='MinMaxObserver'),
    method='rtn',
)
