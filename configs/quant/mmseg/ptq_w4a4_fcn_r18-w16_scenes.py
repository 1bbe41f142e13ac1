# W4A4 post-training quantization of the scenes FCN (the layers of the QAT
# configs: backbone and the FCN head's convs; the first stem conv and the pixel
# classifier conv_seg float): per-channel weights, MSE-optimal weight and
# activation clipping from 256 training images (the calibration set of the W8A8
# config), then unit-wise reconstruction (BRECQ / UWC) of the stem, every
# residual block and every head conv:
#   python tools/ptq.py configs/quant/mmseg/ptq_w4a4_fcn_r18-w16_scenes.py \
#       FLOAT.pth --out w4a4.pth [--method rtn|adaround|unit] [--iters N]
#   python tools/test.py configs/quant/mmseg/ptq_w4a4_fcn_r18-w16_scenes.py w4a4.pth
_base_ = ['./ptq_w8a8_fcn_r18-w16_scenes.py']

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
        'backbone.stem',
        r're:backbone\.layer\d+\.\d+',
        r're:decode_head\.(convs\.\d+|conv_cat)',
    ],
    # BRECQ: 20k iterations per unit; CPU-sized here
    reconstruction=dict(iters=300, batch_size=32, loss='mse'),
)
