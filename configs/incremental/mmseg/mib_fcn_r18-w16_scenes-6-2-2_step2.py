# MiB, step 2.
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step2.py']

model = dict(head_type='softmax', loss_weights=dict(_delete_=True, ce=1.0, kd=10.0))
load_from = 'work_dirs/mib_fcn_r18-w16_scenes-6-2-2_step1/iter_500.pth'
