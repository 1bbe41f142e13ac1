# W4A4 post-training quantization of the scenes RetinaNet (the layers of the QAT
# configs: backbone, FPN and the head's stacked convs; stem conv and prediction
# convs float): per-channel weights, MSE-optimal weight and activation clipping
# from 256 training images (the calibration set of the W8A8 config), then
# unit-wise reconstruction (BRECQ / UWC) of every residual block, every FPN conv
# and every stacked head conv (a head conv is one unit shared by the three FPN
# levels; its calibration samples are all three levels' inputs):
#   python tools/ptq.py configs/quant/mmdet/ptq_w4a4_retinanet_r18-w16_scenes.py \
#       FLOAT.pth --out w4a4.pth [--method rtn|adaround|unit] [--iters N]
#   python tools/test.py configs/quant/mmdet/ptq_w4a4_retinanet_r18-w16_scenes.py \
#       w4a4.pth
_base_ = ['./ptq_w8a8_retinanet_r18-w16_scenes.py']

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
        r're:neck\.(lateral|fpn)_convs\.\d+',
        r're:bbox_head\.(cls|reg)_convs\.\d+',
    ],
    # BRECQ: 20k iterations per unit; CPU-sized here
    reconstruction=dict(iters=300, batch_size=32, loss='mse'),
)
