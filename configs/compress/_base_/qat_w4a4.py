# tools/compress.py recipe `qat-w4a4`: the `qat-int8` pipeline with 4-bit LSQ
# weights and inputs (narrowed grids inside onnxruntime's 8-bit kernels after
# export; onnxruntime has no 4-bit kernels, so the speed is the 8-bit one).
_base_ = ['./qat_int8.py']
quant = dict(
    w=dict(type='LSQQuantizer', bits=4, signed=True),
    a=dict(type='LSQQuantizer', bits=4),
)
