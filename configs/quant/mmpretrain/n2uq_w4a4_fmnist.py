# N2UQ (Liu et al., CVPR 2022): activation thresholds learned (non-uniform input
# segments) with uniform output levels and the generalized STE; weights by the
# entropy-preserving per-channel L1 scaling. The activation quantizer's grid is
# fitted to the first batch (init='data'; the official constants assume inputs
# in [0, 2] from RPReLU blocks). Activation-quantizer parameters: lr / 10, no
# decay, as the official code.
# W4A4 on Fashion-MNIST, fine-tuned from the float student.
# Train: python tools/train.py configs/quant/mmpretrain/n2uq_w4a4_fmnist.py
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='N2UQWeightQuantizer', bits=4),
        a=dict(type='N2UQActQuantizer', bits=4),
    )
)

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '_quantizer.': dict(lr_mult=0.1, decay_mult=0.0),
        }
    )
)
