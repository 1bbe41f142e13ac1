# DWPose second stage after dwpose-s1-scaled_r18-w32-psa-p_to_w16_scenes.py
# (distillation weights scaled to the heatmap loss): the head self-distillation
# of dwpose-s2_r18-w16_scenes.py, starting from that stage-1 student, at the
# learning rate stage 1 ends at (2e-5 = the base 2e-3 x the cosine schedule's
# eta_min_ratio 0.01) instead of the base learning rate: the head starts as a
# copy of its teacher, so a large step only moves it away.
# Stage 1: python tools/train.py \
#     configs/psa/mmpose/dwpose-s1-scaled_r18-w32-psa-p_to_w16_scenes.py
# Stage 2: python tools/train.py \
#     configs/psa/mmpose/dwpose-s2-scaled_r18-w16_scenes.py
_base_ = ['./dwpose-s2_r18-w16_scenes.py']

stage1 = 'work_dirs/dwpose-s1-scaled_r18-w32-psa-p_to_w16_scenes/iter_300_student.pth'
model = dict(teacher=dict(checkpoint=stage1))
load_from = stage1
optim_wrapper = dict(optimizer=dict(lr=2e-5))
