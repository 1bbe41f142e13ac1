# PISR step 2 at x4 (_base_/pisr_student.py): LR input patches of 16 px.
_base_ = ['../_base_/sr_photos_x4.py', '../_base_/pisr_student.py']

model = dict(
    student=dict(scale=4),
    teacher=dict(
        config=dict(scale=4),
        checkpoint='work_dirs/pisr_teacher_x4_photos/iter_3000.pth',
    ),
    input_shape=(1, 16, 16),
)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-4))
