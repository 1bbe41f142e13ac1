# PISR step 2 at x2 (_base_/pisr_student.py): LR input patches of 24 px.
_base_ = ['../_base_/sr_photos_x2.py', '../_base_/pisr_student.py']

model = dict(
    student=dict(scale=2),
    teacher=dict(
        config=dict(scale=2),
        checkpoint='work_dirs/pisr_teacher_x2_photos/iter_3000.pth',
    ),
    input_shape=(1, 24, 24),
)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-4))
