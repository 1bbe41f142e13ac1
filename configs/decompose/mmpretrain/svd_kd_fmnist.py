# KD fine-tune of the channel SVD (k x k conv to rank r + 1x1) decomposition:
# DistillModel with
# the decomposed model (svd_fmnist.py) as student and the undecomposed trained
# model as teacher, loss = CE + tau^2 KL (tau 4). load_from the float checkpoint
# initialises the student (plain keys map to student.*, the decomposed layers
# factorise the float weights).
_base_ = ['./svd_fmnist.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(config='{{ fileDirname }}/svd_fmnist.py'),
    teacher=dict(
        config='{{ fileDirname }}/resnet18-w16_fmnist.py',
        checkpoint='work_dirs/resnet18-w16_fmnist/epoch_4.pth',
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
