# AdamBNN step 1 with the official loss: distillation from a real-valued teacher
# only (the official DistributionLoss is the soft cross-entropy to the teacher's
# probabilities at temperature 1, no label term; KL(p_T || p_S) at tau=1 has the
# same gradient). Student: the ReActNet of adambnn_step1_fmnist.py (binary
# activations, real weights); teacher: the Fashion-MNIST ResNet-18 teacher
# (train configs/baselines/mmpretrain/fmnist_teacher.py first, or set
# --cfg-options model.teacher.checkpoint=PATH). Optimizer and schedule: step 1's.
_base_ = './adambnn_step1_fmnist.py'

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(config='{{ fileDirname }}/adambnn_step1_fmnist.py'),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmpretrain/fmnist_teacher.py',
        checkpoint='work_dirs/fmnist_teacher/epoch_8.pth',
    ),
    input_shape=(1, 28, 28),
    student_loss_weight=0.0,
    distill=dict(
        kd=dict(
            student='head.fc',
            teacher='head.fc',
            loss=dict(type='VanillaKDLoss', tau=1.0, loss_weight=1.0),
        )
    ),
)
