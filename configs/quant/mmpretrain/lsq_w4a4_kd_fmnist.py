# Quantization-aware distillation in one config: the W4A4 LSQ student (the
# QuantizedModel of lsq_w4a4_fmnist.py) trained with cross-entropy + vanilla KD
# (tau=4) from the float ResNet-18 w16 teacher. Neither capability knows of the
# other: DistillModel builds the student from its config (a QuantizedModel) and
# records its head.fc output; the quantizers initialize on the first training
# batch after `load_from` (the float student checkpoint initializes the student).
# Teacher checkpoint: train configs/baselines/mmpretrain/fmnist_teacher.py first
# (or --cfg-options model.teacher.checkpoint=PATH).
_base_ = ['./_base_/qat_fmnist.py']

student = _base_.model
student.quant = dict(
    w=dict(type='LSQQuantizer', bits=4, signed=True),
    a=dict(type='LSQQuantizer', bits=4),
)
model = dict(
    _delete_=True,
    type='DistillModel',
    student=student,
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
