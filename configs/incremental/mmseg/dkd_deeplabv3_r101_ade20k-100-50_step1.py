# DKD, ADE20K 100-50 overlapped, step 1: classes 101-150 (VOC step 1's
# optimiser, 100 epochs).
_base_ = ['./dkd_deeplabv3_r101_ade20k-100-50_step0.py']

step = 1
model = dict(step=step)
train_dataloader = dict(dataset=dict(step=step))
val_dataloader = dict(dataset=dict(step=step))
test_dataloader = val_dataloader
load_from = 'work_dirs/dkd_deeplabv3_r101_ade20k-100-50_step0/epoch_100.pth'
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(decay_mult=0.0),
            'decode_head': dict(lr_mult=10.0, decay_mult=0.0),
            'classifier': dict(lr_mult=10.0, decay_mult=0.0),
            'classifier.heads.2.': dict(lr_mult=10.0, decay_mult=1.0),
        }
    ),
)
