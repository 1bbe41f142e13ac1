# The Fashion-MNIST student (the float model of configs/quant/mmpretrain/
# fp32_resnet18-w8_fmnist.py) with a QAT fine-tuning schedule, as the CONFIG of
# tools/compress.py: its stages train with this config's schedule (Adam 1e-3,
# cosine, 1 epoch on a class-balanced 10k subset) from the float checkpoint.
#   python tools/compress.py \
#       configs/compress/mmpretrain/fmnist_student_qat_schedule.py FP32.pth \
#       --recipe mixed --gbops X --work-dir WORK --shape 1 1 28 28
_base_ = ['../../quant/mmpretrain/fp32_resnet18-w8_fmnist.py']

train_dataloader = dict(dataset=dict(subset_size=10000))
max_epochs = 1
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-5),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={'_quantizer.': dict(lr_mult=1.0, decay_mult=0.0)},
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
    )
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
