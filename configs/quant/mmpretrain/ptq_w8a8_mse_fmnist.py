# W8A8 post-training quantization with MSE-optimal clipping of the weights
# (per channel) and the activations instead of min-max ranges.
#   python tools/ptq.py configs/quant/mmpretrain/ptq_w8a8_mse_fmnist.py FP32.pth
_base_ = ['./ptq_w8a8_fmnist.py']

ptq = dict(
    weight_observer=dict(type='MSEObserver'),
    act_observer=dict(type='MSEObserver'),
)
