# The limited-data two-stage recipe of ptq_kd_w4a4_fmnist.py (Yuan et al.) at W3A3.
#   python tools/ptq.py configs/quant/mmpretrain/ptq_kd_w3a3_fmnist.py FP32.pth --test
_base_ = ['./ptq_kd_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=3, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=3),
    )
)
