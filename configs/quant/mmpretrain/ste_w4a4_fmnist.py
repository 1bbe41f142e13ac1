# Plain uniform quantization with the straight-through estimator (the baseline):
# weights per output channel from their current min/max, activations from an
# EMA of batch min/max (like torch.ao's eager QAT fake quants). No learned range.
# W4A4 on Fashion-MNIST, fine-tuned from the float student.
# Train: python tools/train.py configs/quant/mmpretrain/ste_w4a4_fmnist.py
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(
            type='UniformSTEQuantizer',
            bits=4,
            observer='current',
            signed=True,
            per_channel=True,
        ),
        a=dict(type='UniformSTEQuantizer', bits=4, observer='ema'),
    )
)
