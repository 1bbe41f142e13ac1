# W8A8 post-training quantization of the scenes FCN (per-channel weights, min-max
# ranges from 256 training images; no training):
#   python tools/ptq.py configs/quant/mmseg/ptq_w8a8_fcn_r18-w16_scenes.py \
#       FLOAT.pth --out ptq.pth
#   python tools/test.py configs/quant/mmseg/ptq_w8a8_fcn_r18-w16_scenes.py ptq.pth
_base_ = ['./lsq_w8a8_fcn_r18-w16_scenes.py']

model = dict(
    quant=dict(w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True))
)
ptq = dict(num_images=256, method='rtn')
