# Fine-tuning baseline, step 1: DKD's step 1 without the KD / DKD terms
# (L_mbce + L_ac only, new head from the auxiliary classifier).
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step1.py']

model = dict(loss_weights=dict(kd=0.0, dkd_pos=0.0, dkd_neg=0.0))
load_from = 'work_dirs/finetune_fcn_r18-w16_scenes-6-2-2_step0/iter_2000.pth'
