# PISR step 2, shared by the x2 and x4 students: FSRCNN student initialised from
# the step-1 teacher's decoder, L1 to HR + 1e-6 x Laplace variance-aware
# distillation of the `expanding` output (official step2.yml: weights 1 / 1e-6,
# Adam lr 1e-4, cosine to 1e-5). The config that inherits this one (with
# sr_photos_x2.py or sr_photos_x4.py) sets the scale of student and teacher, the
# teacher checkpoint, the LR input shape and the optimizer.
model = dict(
    type='DistillModel',
    student=dict(type='FSRCNN'),
    teacher=dict(config=dict(type='PISRTeacher')),
    distill=dict(
        expanding=dict(
            student='expanding',
            teacher='decoder.expanding',
            adapter=None,
            loss=dict(type='VIDLoss', channels=56, pdf='laplace', loss_weight=1e-6),
        )
    ),
)
custom_hooks = [dict(type='InitStudentFromTeacherHook', teacher_prefix='decoder.')]
