# DKD, scenes 6-2-2 overlapped, step 2: garments 9-10 added (as step 1, from
# the step-1 checkpoint).
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step1.py']

step = 2
model = dict(step=step)
train_dataloader = dict(dataset=dict(step=step))
val_dataloader = dict(dataset=dict(step=step))
test_dataloader = val_dataloader
load_from = 'work_dirs/dkd_fcn_r18-w16_scenes-6-2-2_step1/iter_500.pth'
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'classifier.heads.2.': dict(lr_mult=10.0, decay_mult=0.0),
            f'classifier.heads.{step + 1}.': dict(lr_mult=10.0, decay_mult=1.0),
        }
    )
)
