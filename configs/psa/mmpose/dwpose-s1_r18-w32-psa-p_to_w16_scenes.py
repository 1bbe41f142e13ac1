# DWPose first stage (Yang et al., "Effective Whole-body Pose Estimation with
# Two-stages Distillation", ICCVW 2023; official code IDEA-Research/DWPose,
# ported to mmpose as DWPoseDistiller): the student learns from its ground
# truth, from the teacher's last backbone feature (1x1 conv with bias to the
# teacher's channels, squared error summed and divided by the batch,
# alpha 7e-5) and from the teacher's keypoint logits (DWPoseKDLoss: softmax
# over each heatmap's pixels of 10 x the heatmap, KL, weight 0.1); both
# distillation terms decay linearly to 0 over training (official: per epoch,
# 1 - epoch / max_epochs; here per iteration of the 300-iteration schedule).
# Teacher: R-18 w32 + PSA_p; student: the plain R-18 w16 (the saved
# iter_300_student.pth is the plain student, and DWPose stage 2 starts from it).
# Teacher: python tools/train.py \
#     configs/psa/mmpose/topdown_heatmap_r18-w32-psa-p_scenes_teacher.py
# Student: python tools/train.py \
#     configs/psa/mmpose/dwpose-s1_r18-w32-psa-p_to_w16_scenes.py
_base_ = ['../../distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py']

model = dict(
    distill=dict(
        _delete_=True,
        feature=dict(
            student='backbone',
            teacher='backbone',
            adapter=dict(type='Conv2d', kernel_size=1),
            loss=dict(type='FeatureMSELoss', reduction='batchmean', loss_weight=7e-5),
            schedule=dict(decay='iter'),
        ),
        logit=dict(
            student='head',
            teacher='head',
            loss=dict(type='DWPoseKDLoss', beta=10.0, loss_weight=0.1),
            schedule=dict(decay='iter'),
        ),
    )
)
