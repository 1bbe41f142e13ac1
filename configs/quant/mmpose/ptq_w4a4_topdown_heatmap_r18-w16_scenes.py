# W4A4 post-training quantization of the scenes top-down heatmap pose model (the
# layers of the QAT configs: the backbone convs and the three head deconvs; the
# stem conv and the heatmap conv head.final_layer float): per-channel weights,
# MSE-optimal weight and activation clipping from 256 training crops (the
# calibration set of the W8A8 config), then unit-wise reconstruction (BRECQ /
# UWC) of every residual block and of each head deconvolution (the head's
# deconv / BN / ReLU modules sit flat in one Sequential, so each deconv is its
# own unit):
#   python tools/ptq.py \
#       configs/quant/mmpose/ptq_w4a4_topdown_heatmap_r18-w16_scenes.py \
#       FLOAT.pth --out w4a4.pth [--method rtn|adaround|unit] [--iters N]
#   python tools/test.py \
#       configs/quant/mmpose/ptq_w4a4_topdown_heatmap_r18-w16_scenes.py w4a4.pth
_base_ = ['./ptq_w8a8_topdown_heatmap_r18-w16_scenes.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=4, signed=True, per_channel=True),
        a=dict(type='LSQQuantizer', bits=4),
    )
)
ptq = dict(
    weight_observer=dict(type='MSEObserver'),
    act_observer=dict(type='MSEObserver'),
    method='unit',
    units=[
        r're:backbone\.layer\d+\.\d+',
        r're:head\.deconv_layers\.[036]',
    ],
    # BRECQ: 20k iterations per unit; CPU-sized here
    reconstruction=dict(iters=300, batch_size=32, loss='mse'),
)
