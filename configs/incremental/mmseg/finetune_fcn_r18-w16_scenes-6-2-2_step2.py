# Fine-tuning baseline, step 2.
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step2.py']

model = dict(loss_weights=dict(kd=0.0, dkd_pos=0.0, dkd_neg=0.0))
load_from = 'work_dirs/finetune_fcn_r18-w16_scenes-6-2-2_step1/iter_500.pth'
