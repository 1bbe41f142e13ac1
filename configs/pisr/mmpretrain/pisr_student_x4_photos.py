# PISR step 2: FSRCNN student initialised from the step-1 teacher's decoder,
# L1 to HR + 1e-6 x Laplace variance-aware distillation of the `expanding`
# output (official step2.yml: weights 1 / 1e-6, Adam lr 1e-4, cosine to 1e-5).
_base_ = '../_base_/sr_photos_x4.py'

model = dict(
    type='DistillModel',
    student=dict(type='FSRCNN', scale=4),
    teacher=dict(
        config=dict(type='PISRTeacher', scale=4),
        checkpoint='work_dirs/pisr_teacher_x4_photos/iter_3000.pth',
    ),
    distill=dict(
        expanding=dict(
            student='expanding',
            teacher='decoder.expanding',
            adapter=None,
            loss=dict(type='VIDLoss', channels=56, pdf='laplace', loss_weight=1e-6),
        )
    ),
    input_shape=(1, 16, 16),
)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-4))
custom_hooks = [dict(type='InitStudentFromTeacherHook', teacher_prefix='decoder.')]
