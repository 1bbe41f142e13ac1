# Vanilla KD (Hinton) on Fashion-MNIST: ResNet-18 w16 teacher -> 3-stage
# ResNet-18 w8 student, loss = CE + tau^2 KL(p_T || p_S) (tau=4), the
# CIFAR-style recipe of mdistiller at the CPU-sized 8-epoch schedule.
# The teacher checkpoint comes from training configs/baselines/mmpretrain/
# fmnist_teacher.py (default work dir); override it with
# --cfg-options model.teacher.checkpoint=PATH.
# The other distill configs of this folder inherit this one and replace
# `model.distill`.
_base_ = [
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/schedules/fmnist_sgd.py',
    '../../_base_/default_runtime_cls.py',
]

model = dict(
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmpretrain/fmnist_student.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmpretrain/fmnist_teacher.py',
        checkpoint='work_dirs/fmnist_teacher/epoch_8.pth',
    ),
    input_shape=(1, 28, 28),
    distill=dict(
        kd=dict(
            student='head.fc',
            teacher='head.fc',
            loss=dict(type='VanillaKDLoss', tau=4.0, loss_weight=1.0),
        )
    ),
)
