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
#   speed       the float model's FP32 graph (WORK/model_fp32.onnx) against the
#               int8 graph: file sizes, onnxruntime latency at --shape
stages = ['float_test', 'ptq', 'ptq_test', 'export', 'onnx_test', 'speed']
quant = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True, per_channel=True),
    a=dict(type='LSQQuantizer', bits=8),
)
# tools/ptq.py settings (the `ptq` dict of WORK/ptq/config.py)
ptq = dict(num_images=1024, method='rtn')
# the `speed` stage (as in qat_int8.py)
speed = dict(threads=1, runs=30, warmup=3)
