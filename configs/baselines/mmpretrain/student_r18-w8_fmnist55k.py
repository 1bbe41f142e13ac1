# Converged Fashion-MNIST student: fmnist_student.py (3-stage CIFAR-style
# ResNet-18, widths 8-32, CE; the student of the distillation, quantization and
# calibration tables) on the whole 55k train split, validated every epoch on the
# 5k hold-out; the cosine schedule runs over all epochs, so the validation curve
# flattens at the end. Trained and tested (10k test split) by
# benchmarks/fmnist_converged.py; its checkpoint for load_from:
# work_dirs/student_r18-w8_fmnist55k/epoch_15.pth (seed 0).
_base_ = ['./fmnist_student.py']

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
