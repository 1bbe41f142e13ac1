# Converged Fashion-MNIST teacher: fmnist_teacher.py (CIFAR-style ResNet-18,
# widths 16-128, CE) on the whole 55k train split, validated every epoch on the
# 5k hold-out; the cosine schedule runs over all epochs, so the validation curve
# flattens at the end. Trained and tested (10k test split) by
# benchmarks/fmnist_converged.py; its checkpoint for load_from / a teacher:
# work_dirs/teacher_r18-w16_fmnist55k/epoch_15.pth (seed 0).
_base_ = ['./fmnist_teacher.py']

max_epochs = 15
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
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
