# The limited-data two-stage recipe of ptq_kd_w4a4_fmnist.py (Yuan et al.) at W3A3.
#   python tools/ptq.py configs/quant/mmpretrain/ptq_kd_w3a3_fmnist.py FP32.pth --test
# Stage-2 lr 3e-4 (ptq_kd_w4a4: 1e-4): the best of 10 stage-2 settings on the
# Fashion-MNIST val split, seeds 0 and 1 (benchmarks/ptq_kd_val.py; docs/quant/ptq.md
# section 6). The paper gives no stage-2 schedule (only its abstract is available).
_base_ = ['./ptq_kd_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=3, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=3),
    )
)
ptq = dict(kd=dict(lr=3e-4))
