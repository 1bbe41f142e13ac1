# Heatmap KD from a PSA teacher to a plain student on the garment keypoints:
# the R-18 w32 teacher with PSA_p after conv1 of every BasicBlock
# (configs/psa/mmpose/topdown_heatmap_r18-w32-psa-p_scenes_teacher.py) -> the plain
# R-18 w16 student of configs/baselines/mmpose/topdown_heatmap_r18-w16_scenes.py.
# The student's heatmaps regress the teacher's (MSE) next to its own ground-truth
# loss, as in heatmap_kd_r18-w32_to_w16_scenes.py; the saved student is plain.
# Teacher: python tools/train.py \
#     configs/psa/mmpose/topdown_heatmap_r18-w32-psa-p_scenes_teacher.py
# Student: python tools/train.py \
#     configs/distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py
_base_ = ['./heatmap_kd_r18-w32_to_w16_scenes.py']

model = dict(
    teacher=dict(
        config='{{ fileDirname }}/../../psa/mmpose/'
        'topdown_heatmap_r18-w32-psa-p_scenes_teacher.py',
        checkpoint='work_dirs/topdown_heatmap_r18-w32-psa-p_scenes_teacher/'
        'iter_300.pth',
    )
)
