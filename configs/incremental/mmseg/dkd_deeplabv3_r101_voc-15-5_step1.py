# DKD, VOC 15-5 overlapped, step 1: classes 16-20 against the frozen step-0
# model (official: lr 1e-4; backbone, ASPP and old classifiers without weight
# decay, the new classifier with it; BN frozen; 60 epochs).
_base_ = ['./dkd_deeplabv3_r101_voc-15-5_step0.py']

step = 1
model = dict(step=step)
train_dataloader = dict(dataset=dict(step=step))
val_dataloader = dict(dataset=dict(step=step))
test_dataloader = val_dataloader
load_from = 'work_dirs/dkd_deeplabv3_r101_voc-15-5_step0/epoch_60.pth'
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(decay_mult=0.0),
            'decode_head': dict(lr_mult=10.0, decay_mult=0.0),
            'classifier': dict(lr_mult=10.0, decay_mult=0.0),
            f'classifier.heads.{step + 1}.': dict(lr_mult=10.0, decay_mult=1.0),
        }
    ),
)
