# W1A1 through the generic transform: every Conv2d/Linear of the float Fashion-MNIST
# student except the first conv and the classifier gets binary weights
# (sign(W) * mean|W| per output channel, clipped STE: ScaledBinaryWeightQuantizer)
# and binary inputs (RSign: sign(x + b) with a learnable per-channel shift and the
# ApproxSign gradient: RSignQuantizer), fine-tuned from the float checkpoint.
# As in AdamBNN's binary-weight step: Adam and no weight decay. RSign shifts are
# quantizer parameters ('_quantizer.' key of the base): same lr, no decay.
# For the ReActNet architecture and the two-step recipe see adambnn_step*_fmnist.py.
# Train: python tools/train.py configs/quant/mmpretrain/binary_w1a1_fmnist.py
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='ScaledBinaryWeightQuantizer', bits=1),
        a=dict(type='RSignQuantizer', bits=1),
    )
)

optim_wrapper = dict(optimizer=dict(weight_decay=0.0))
