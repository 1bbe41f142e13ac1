# Post-training quantization, W4A4 (per-channel weights), of the Fashion-MNIST
# student: MSE-optimal weight and activation clipping from 1024 training images,
# then unit-wise reconstruction of each residual block (BRECQ / UWC: the
# rounding of a block's convs is learned jointly against the float block output).
#   python tools/ptq.py configs/quant/mmpretrain/ptq_w4a4_fmnist.py FP32.pth \
#       --out ptq_w4a4.pth [--method rtn|adaround|unit] [--loss fisher]
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=4, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=4),
    )
)
ptq = dict(
    num_images=1024,
    weight_observer=dict(type='MSEObserver'),
    act_observer=dict(type='MSEObserver'),
    method='unit',
    # the residual blocks (BasicBlock) of mmpretrain's ResNet
    units=[r're:backbone\.layer\d+\.\d+'],
    # BRECQ: 20k iterations per unit, batch 32, Adam 1e-3, lambda 0.01, beta
    # 20 -> 2 after 20% warm-up; CPU-sized here
    reconstruction=dict(iters=2000, batch_size=32, loss='mse'),
)
