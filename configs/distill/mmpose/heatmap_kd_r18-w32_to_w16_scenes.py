# Heatmap KD on the fashion-scene keypoints (as in Fast Pose Distillation):
# the student's heatmaps regress the teacher's (MSE) next to its own
# ground-truth heatmap loss. Top-down R-18 w32 teacher -> w16 student; both
# predict 5 x 32 x 32 heatmaps from 64 x 64 crops, so no adapter is needed.
# Teacher: python tools/train.py \
#     configs/baselines/mmpose/topdown_heatmap_r18-w32_scenes_teacher.py
_base_ = ['../../baselines/mmpose/topdown_heatmap_r18-w16_scenes.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmpose/'
        'topdown_heatmap_r18-w16_scenes.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmpose/'
        'topdown_heatmap_r18-w32_scenes_teacher.py',
        checkpoint='work_dirs/topdown_heatmap_r18-w32_scenes_teacher/iter_300.pth',
    ),
    input_shape=(3, 64, 64),
    distill=dict(
        heatmap=dict(
            student='head',
            teacher='head',
            loss=dict(type='FeatureMSELoss', loss_weight=1.0),
        )
    ),
)
