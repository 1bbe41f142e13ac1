# PKD (Cao et al., NeurIPS 2022) on the fashion scenes: RetinaNet R-18 w32
# teacher -> w16 student, Pearson-correlation distillation on all three FPN
# levels in one entry (weight 6 per level, the mmrazor Faster R-CNN setting).
# The student FPN has 64 channels, the teacher's 128: a 1x1 conv + BN adapter
# per level is built automatically. The teacher runs backbone + neck only.
# Teacher: python tools/train.py \
#     configs/baselines/mmdet/retinanet_r18-w32_scenes_teacher.py
_base_ = ['../../baselines/mmdet/retinanet_r18-w16_scenes.py']

model = dict(
    _delete_=True,
    type='DistillModel',
    student=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/retinanet_r18-w16_scenes.py'
    ),
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmdet/'
        'retinanet_r18-w32_scenes_teacher.py',
        checkpoint='work_dirs/retinanet_r18-w32_scenes_teacher/iter_1600.pth',
    ),
    input_shape=(3, 128, 128),
    distill=dict(
        fpn=dict(
            student='neck', teacher='neck', loss=dict(type='PKDLoss', loss_weight=6.0)
        )
    ),
)
