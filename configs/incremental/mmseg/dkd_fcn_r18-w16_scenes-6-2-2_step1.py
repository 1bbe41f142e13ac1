# DKD, scenes 6-2-2 overlapped, step 1: garments 7-8 added. L_mbce + 5 L_kd +
# 5 L_dkd_pos + 5 L_dkd_neg + L_ac against the frozen step-0 model, new head
# initialised from the auxiliary classifier, BN and dropout frozen.
# Train after step 0: python tools/train.py <this config>  (mmseg's own
# tools/train.py works the same), or all steps: tools/ciss.py
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step0.py']

step = 1
model = dict(step=step)
train_dataloader = dict(dataset=dict(step=step))
val_dataloader = dict(dataset=dict(step=step))
test_dataloader = val_dataloader
load_from = 'work_dirs/dkd_fcn_r18-w16_scenes-6-2-2_step0/iter_2000.pth'

# official step >= 1 parameter groups (train_voc.py): backbone at the base
# lr, decode head and classifiers 10x; backbone, head and old classifiers
# without weight decay, the new classifier (heads.<step + 1>) with it. The
# optimizer stays step 0's AdamW (base lr 2e-4 = step 0's / 10); the official
# SGD (Nesterov, momentum 0.9) is selected by the options of
# docs/incremental/ciss.md ("Optimizer at steps >= 1").
max_iters = 500
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(decay_mult=0.0),
            'decode_head': dict(lr_mult=10.0, decay_mult=0.0),
            'classifier': dict(lr_mult=10.0, decay_mult=0.0),
            f'classifier.heads.{step + 1}.': dict(lr_mult=10.0, decay_mult=1.0),
        }
    ),
)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
