# The trained model that the decomposition configs start from: the Fashion-MNIST
# teacher architecture (CIFAR-style ResNet-18, widths 16-128, 28.6 M FLOPs) on a
# CPU-sized schedule: a class-balanced 5k subset of the training split, 4
# epochs. Its last checkpoint (work_dirs/resnet18-w16_fmnist/epoch_4.pth) is the
# CHECKPOINT of tools/decompose.py and the teacher of the KD fine-tunes.
_base_ = ['../../baselines/mmpretrain/fmnist_teacher.py']

train_dataloader = dict(dataset=dict(subset_size=5000))
max_epochs = 4
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True,
    ),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=1,
        end=max_epochs,
        eta_min=1e-4,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
