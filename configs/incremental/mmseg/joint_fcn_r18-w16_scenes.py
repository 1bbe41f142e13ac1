# Joint training (upper bound of class-incremental learning): one step with
# all 10 garments, same model and losses as DKD's step 0, for as many
# iterations as the whole sequence; old / new mIoU reported on the 6-2-2
# partition (garments 1-6 old, 7-10 new).
# Train: python tools/train.py configs/incremental/mmseg/joint_fcn_r18-w16_scenes.py
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step0.py']

split = 'joint'
model = dict(split=split)
train_dataloader = dict(dataset=dict(split=split))
val_dataloader = dict(dataset=dict(split=split))
test_dataloader = val_dataloader
val_evaluator = dict(num_base_classes=6)
test_evaluator = val_evaluator

# as many iterations as the whole 6-2-2 sequence (2,000 + 2 x 500)
max_iters = 3000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='PolyLR', eta_min=0.0, power=0.9, begin=50, end=max_iters, by_epoch=False
    ),
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
