# DAQ (Kim et al., ICCV 2021): distance-aware soft rounding with the temperature
# controller (T=2; kernel sigma 1 for weights, 2 for activations). Its training
# forward value equals hard rounding; only the gradient differs. Weights are
# standardized and clipped to learned [-3, 3] bounds; activations to [0, u].
# Quantizer parameters and output scales: lr x 0.1, no decay (official: Adam 1e-4
# for them; the weights use SGD, here Adam 1e-3 for all, one optimizer).
# W4A4 on Fashion-MNIST, fine-tuned from the float student.
# Train: python tools/train.py configs/quant/mmpretrain/daq_w4a4_fmnist.py
_base_ = ['./_base_/qat_fmnist.py']

model = dict(
    quant=dict(
        w=dict(type='DAQQuantizer', bits=4, role='weight'),
        a=dict(type='DAQQuantizer', bits=4, role='activation'),
    )
)

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            '_quantizer.': dict(lr_mult=0.1, decay_mult=0.0),
            '.output_scale': dict(lr_mult=0.1, decay_mult=0.0),
        }
    )
)
