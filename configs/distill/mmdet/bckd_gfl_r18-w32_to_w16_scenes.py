# BCKD (Yang et al., ICCV 2023) on the fashion scenes: GFL R-18 w32 teacher ->
# w16 student. Binary-classification KD (sigmoid BCE to the teacher scores,
# modulated by |p_t - p_s|, weight 1.0) and IoU-based localisation KD (GIoU
# between the boxes each model decodes, weighted by the largest class-score
# disagreement, weight 4.0) on every FPN level, normalised by the number of
# positive anchors (docs/distill/detection.md). The teacher runs backbone,
# neck and head forward only.
# Teacher: python tools/train.py configs/baselines/mmdet/gfl_r18-w32_scenes_teacher.py
# Student: python tools/train.py configs/distill/mmdet/bckd_gfl_r18-w32_to_w16_scenes.py
# Test the plain student (work_dirs/<this config>/iter_800_student.pth) with
# configs/baselines/mmdet/gfl_r18-w16_scenes.py and the stock tools/test.py.
_base_ = ['../../baselines/mmdet/gfl_r18-w16_scenes.py', './_base_/bckd_dense_head.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/gfl_r18-w16_scenes.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/gfl_r18-w32_scenes_teacher.py',
        checkpoint='work_dirs/gfl_r18-w32_scenes_teacher/iter_800.pth',
    ),
    input_shape=(3, 128, 128),
    distill={{_base_.bckd_dense_head}},
)
