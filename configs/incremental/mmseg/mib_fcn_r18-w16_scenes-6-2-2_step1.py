# MiB, step 1: unbiased cross-entropy + 10 x unbiased KD against the frozen
# step-0 model; the new head starts as the background classifier with bias
# b - log(|C_t| + 1) (MiB's initialisation). Schedule as DKD's step 1.
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step1.py']

model = dict(head_type='softmax', loss_weights=dict(_delete_=True, ce=1.0, kd=10.0))
load_from = 'work_dirs/mib_fcn_r18-w16_scenes-6-2-2_step0/iter_2000.pth'
