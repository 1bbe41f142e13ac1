# LSQ W8A8 on Fashion-MNIST: the W4A4 recipe of lsq_w4a4_fmnist.py
# (same layers, float start, optimizer settings and hooks) with 8-bit
# quantizers, trained with 8-bit quantizers also on the residual tensors
# (`output_quantizers`) and evaluated with the BN shifts on the int32 grid of
# the integer convs (`integer_bias`), so the model is the one onnxruntime's
# integer kernels run after `tools/export_onnx.py --ort-int8`
# (docs/quant/export.md).
_base_ = ['./lsq_w4a4_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='LSQQuantizer', bits=8, signed=True),
        a=dict(type='LSQQuantizer', bits=8),
        # Per-tensor LSQ quantizers (the `a` config, sign decided from data)
        # on: the stem ReLU output and each block output (post-Add ReLU: what
        # the next block's convs and identity branch read; unsigned), the
        # block's last BN and its downsample branch (the two Add operands;
        # signed) and the pooled feature (the classifier's input). The
        # first conv and the downsample conv of each block read a block
        # output: they use its grid instead of an input quantizer of their
        # own, so every tensor is rounded once, on one grid.
        output_quantizers=dict(
            modules=[
                'backbone.relu',
                r're:backbone\.layer\d+\.\d+',
                r're:backbone\.layer\d+\.\d+\.(bn2|downsample)',
                'neck',
            ],
            readers=[r're:backbone\.layer\d+\.\d+\.(conv1|downsample\.0)'],
        ),
        # In eval mode each BN after a quantized conv adds its shift rounded
        # onto the int32 bias grid of the folded integer conv (training,
        # with BNs on batch statistics, is unchanged; no new state).
        integer_bias=True,
    )
)
