# CWD (Shu et al., ICCV 2021) on heatmaps: each of the student's 5 keypoint
# heatmaps (32 x 32) becomes a softmax over its pixels and matches the PSA_p
# teacher's (KL, tau^2-scaled) next to the student's own ground-truth loss.
# tau=0.1: the heatmaps lie in [0, 1], so tau=1 would give nearly uniform
# distributions; 1 / tau = 10 is DWPose's beta on keypoint logits. The saved
# student is the plain R-18 w16 of
# configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py.
# Teacher: python tools/train.py \
#     configs/psa/mmpose/topdown_heatmap_r18-w32-psa-p_scenes_teacher.py
# Student: python tools/train.py \
#     configs/psa/mmpose/cwd_r18-w32-psa-p_to_w16_scenes.py
_base_ = ['../../distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py']

model = dict(
    distill=dict(
        _delete_=True,
        heatmap=dict(
            student='head',
            teacher='head',
            loss=dict(type='ChannelWiseDivergenceLoss', tau=0.1, loss_weight=1.0),
        ),
    )
)
