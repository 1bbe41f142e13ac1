# tools/compress.py recipe `qat-int8`: W8A8 LSQ QAT fine-tuned from the float
# checkpoint with the config's own schedule, then the integer onnxruntime export
# and the stock metric of the float, PyTorch-quantized and onnxruntime models.
# Stages (each resumable, each a stock-tool command; tools/compress.py prints them):
#   float_test  tools/test.py CONFIG CHECKPOINT
#   qat         tools/train.py WORK/qat/config.py   (QuantizedModel around the model)
#   qat_test    tools/test.py WORK/qat/config.py WORK/qat/<last checkpoint>
#   export      tools/export_onnx.py WORK/qat/config.py CKPT --out WORK/model_int8.onnx
#   onnx_test   tools/test_onnx.py WORK/qat/config.py WORK/model_int8.onnx
#   speed       the float model's FP32 graph (WORK/model_fp32.onnx) against the
#               int8 graph: file sizes, onnxruntime latency at --shape
stages = ['float_test', 'qat', 'qat_test', 'export', 'onnx_test', 'speed']
quant = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True),
    a=dict(type='LSQQuantizer', bits=8),
)
# the `speed` stage: onnxruntime threads, timed and warm-up rounds (FP32 and int8
# sessions alternately, median per graph)
speed = dict(threads=1, runs=30, warmup=3)
