# tools/compress.py recipe `ptq-int8`: W8A8 post-training quantization of the
# float checkpoint (no training: per-channel 8-bit weights, per-tensor 8-bit
# inputs, steps set by min/max observers on 1024 training images), then the
# integer onnxruntime export and the stock metric of the float, PyTorch PTQ and
# onnxruntime models.
# Stages (each resumable, each a stock-tool command; tools/compress.py prints them):
#   float_test  tools/test.py CONFIG CHECKPOINT
#   ptq         tools/ptq.py WORK/ptq/config.py CHECKPOINT --out WORK/ptq/ptq.pth
#   ptq_test    tools/test.py WORK/ptq/config.py WORK/ptq/ptq.pth
#   export      tools/export_onnx.py WORK/ptq/config.py WORK/ptq/ptq.pth --out ...
#   onnx_test   tools/test_onnx.py WORK/ptq/config.py WORK/model_int8.onnx
stages = ['float_test', 'ptq', 'ptq_test', 'export', 'onnx_test']
quant = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True),
    a=dict(type='LSQQuantizer', bits=8),
)
# tools/ptq.py settings (the `ptq` dict of WORK/ptq/config.py)
ptq = dict(num_images=1024, method='rtn')
