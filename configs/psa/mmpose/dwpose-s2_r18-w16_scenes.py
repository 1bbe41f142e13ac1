# DWPose second stage (head-aware self-distillation; see
# dwpose-s1_r18-w32-psa-p_to_w16_scenes.py for the paper and code): the
# first-stage student is its own teacher; the student keeps the teacher's
# backbone frozen (its BN statistics too: the official code runs the head on
# the frozen teacher's features) and trains its head with DWPoseKDLoss alone
# (weight 1, no ground-truth loss, no decay) for 20 % of the first stage's
# training (60 of 300 iterations), at the base learning rate after a short
# warm-up (the official stage-2 configs never reach their cosine phase).
# Deviation: the head starts from the first-stage head (load_from); in the
# official code it starts from its default initialisation, which 60
# iterations would not retrain.
# Stage 1: python tools/train.py \
#     configs/psa/mmpose/dwpose-s1_r18-w32-psa-p_to_w16_scenes.py
# Stage 2: python tools/train.py configs/psa/mmpose/dwpose-s2_r18-w16_scenes.py
_base_ = ['../../baselines/mmpose/topdown_heatmap_r18-w16_scenes.py']

stage1 = 'work_dirs/dwpose-s1_r18-w32-psa-p_to_w16_scenes/iter_300_student.pth'
student = _base_.model.copy()
student['backbone'] = dict(student['backbone'], frozen_stages=4, norm_eval=True)
model = dict(
    _delete_=True,
    type='DistillModel',
    student=student,
    teacher=dict(
        config='{{ fileDirname }}/../../baselines/mmpose/'
        'topdown_heatmap_r18-w16_scenes.py',
        checkpoint=stage1,
    ),
    student_loss_weight=0.0,
    input_shape=(3, 64, 64),
    distill=dict(
        logit=dict(
            student='head',
            teacher='head',
            loss=dict(type='DWPoseKDLoss', beta=10.0, loss_weight=1.0),
        )
    ),
)
load_from = stage1

max_iters = 60
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=6, start_factor=0.01, by_epoch=False)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters),
)
