# MiB (Cermelli et al., CVPR 2020) in the same framework, scenes 6-2-2
# overlapped, step 0: softmax heads (channel 0 background), cross-entropy.
# Whole split: python tools/ciss.py <this config> (from the repository root)
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step0.py']

model = dict(head_type='softmax', loss_weights=dict(_delete_=True, ce=1.0, kd=10.0))
