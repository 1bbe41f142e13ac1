# Shared QAT recipe for Fashion-MNIST: the float student (CIFAR-style ResNet-18,
# 3 stages of widths 8/16/32) wrapped by `QuantizedModel`, fine-tuned from its
# float checkpoint (fp32_resnet18-w8_fmnist.py must be trained first).
# Method configs set `quant.w` / `quant.a` (the quantizers) and, as the papers do,
# optimizer settings for the quantizer parameters.
_base_ = [
    '../../../_base_/models/fmnist_resnet18-w8_student.py',
    '../../../_base_/datasets/fashion_mnist.py',
    '../../../_base_/default_runtime_cls.py',
]

model = dict(
    _delete_=True,
    type='QuantizedModel',
    model={{_base_.model}},
    # First conv and the classifier stay float (default rule), as in the papers.
    quant=dict(),
)

# Float starting point (`load_from` into the quantized model: the quantizer
# parameters are missing from it and are initialized from the first batch).
load_from = 'work_dirs/fp32_resnet18-w8_fmnist/epoch_8.pth'

# CPU-sized fine-tuning: 3 epochs on a class-balanced 20k subset.
train_dataloader = dict(dataset=dict(subset_size=20000))
max_epochs = 3
optim_wrapper = dict(
    optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-5),
    # Quantizer parameters (step sizes, bounds, thresholds: '<layer>.weight_quantizer.*'
    # and '<layer>.act_quantizer.*') and the EWGS/DAQ output scales get no weight
    # decay; methods change lr_mult below as their papers do.
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            '_quantizer.': dict(lr_mult=1.0, decay_mult=0.0),
            '.output_scale': dict(lr_mult=1.0, decay_mult=0.0),
        },
    ),
)
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        eta_min=0,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
