# What {group,svd,tucker2}_kd_fmnist.py share: the fine-tune of
# decomposed_finetune.py as a DistillModel whose student is the decomposed model
# and whose teacher is the undecomposed trained model (the config that inherits
# this one names both config files), loss = CE + tau^2 KL (tau 4). load_from the
# float checkpoint initialises the student (plain keys map to student.*, the
# decomposed layers factorise the float weights).
_base_ = ['./decomposed_finetune.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    teacher=dict(checkpoint='work_dirs/resnet18-w16_fmnist/epoch_4.pth'),
    input_shape=(1, 28, 28),
    distill=dict(
        kd=dict(
            student='head.fc',
            teacher='head.fc',
            loss=dict(type='VanillaKDLoss', tau=4.0, loss_weight=1.0),
        )
    ),
)
