# tools/compress.py recipe `qat-int8`: W8A8 LSQ QAT fine-tuned from the float
# checkpoint with the config's own schedule, then the integer onnxruntime export
# and the stock metric of the float, PyTorch-quantized and onnxruntime models.
# Stages (each resumable, each a stock-tool command; tools/compress.py prints them):
#   float_test  tools/test.py CONFIG CHECKPOINT
#   qat         tools/train.py WORK/qat/config.py   (QuantizedModel around the model)
#   qat_test    tools/test.py WORK/qat/config.py WORK/qat/<last checkpoint>
#   export      tools/export_onnx.py WORK/qat/config.py CKPT --out WORK/model_int8.onnx
#   onnx_test   tools/test_onnx.py WORK/qat/config.py WORK/model_int8.onnx
stages = ['float_test', 'qat', 'qat_test', 'export', 'onnx_test']
quant = dict(
    w=dict(type='LSQQuantizer', bits=8, signed=True),
    a=dict(type='LSQQuantizer', bits=8),
)
