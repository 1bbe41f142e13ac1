# EWGS (Lee et al., CVPR 2021): learnable lower/upper bounds, a learned output
# scale per layer, element-wise gradient scaling in the discretizer; delta
# starts at 0 (STE) and is re-estimated from the Hessian trace (Hutchinson)
# before every epoch after the first (official CIFAR: every 10 of 400 epochs;
# CPU-sized here: 1 batch, at most 10 probes). Quantizer parameters and output
# scales: lr x 0.01, no decay (official: Adam 1e-5 vs 1e-3 for the weights).
# Fixed-delta variant ("ours (fix)"): set delta=1e-3 in w/a and drop the hook.
# W4A4 on Fashion-MNIST, fine-tuned from the float student.
# Train: python tools/train.py configs/quant/mmpretrain/ewgs_w4a4_fmnist.py
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='EWGSQuantizer', bits=4, role='weight', delta=0.0),
        a=dict(type='EWGSQuantizer', bits=4, role='activation', delta=0.0),
    )
)

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '_quantizer.': dict(lr_mult=0.01, decay_mult=0.0),
            '.output_scale': dict(lr_mult=0.01, decay_mult=0.0),
        }
    )
)
custom_hooks = [
    dict(type='EWGSHessianDeltaHook', interval=1, num_batches=1, max_iter=10)
]
