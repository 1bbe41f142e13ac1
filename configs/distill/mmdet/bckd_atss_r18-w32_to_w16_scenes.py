# BCKD on the fashion scenes for an ATSS student: R-18 w32 teacher -> w16
# student with the released weights (binary-classification KD 1.0, GIoU
# localisation KD 4.0); each model decodes its own regression output
# (docs/distill/detection.md). Data, schedule and runtime: the student's.
# Teacher: python tools/train.py configs/baselines/mmdet/atss_r18-w32_scenes_teacher.py
_base_ = ['../../baselines/mmdet/atss_r18-w16_scenes.py', './_base_/bckd_dense_head.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/atss_r18-w16_scenes.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/atss_r18-w32_scenes_teacher.py',
        checkpoint='work_dirs/atss_r18-w32_scenes_teacher/iter_1600.pth',
    ),
    input_shape=(3, 128, 128),
    distill={{_base_.bckd_dense_head}},
)
