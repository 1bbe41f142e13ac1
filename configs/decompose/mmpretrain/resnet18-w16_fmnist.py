# The trained model that the decomposition configs start from: the Fashion-MNIST
# teacher architecture (CIFAR-style ResNet-18, widths 16-128, 28.6 M FLOPs) on a
# CPU-sized schedule: a class-balanced 5k subset of the training split, 4
# epochs. Its last checkpoint (work_dirs/resnet18-w16_fmnist/epoch_4.pth) is the
# CHECKPOINT of tools/decompose.py and the teacher of the KD fine-tunes.
_base_ = ['../../baselines/mmpretrain/fmnist_teacher.py']

train_dataloader = dict(dataset=dict(subset_size=5000))
max_epochs = 4
# the schedule of _base_/schedules/fmnist_sgd.py (warm-up epoch, cosine decay)
# with the cosine ending at these max_epochs
param_scheduler = [
    dict(_base_.param_scheduler[0]),
    dict(_base_.param_scheduler[1], end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
