# Joint training (upper bound of class-incremental learning): one step with
# all 10 garments, same model, losses and schedule as DKD's step 0; old / new
# mIoU reported on the 6-2-2 partition (garments 1-6 old, 7-10 new).
# Train: python tools/train.py configs/incremental/mmseg/joint_fcn_r18-w16_scenes.py
_base_ = ['./dkd_fcn_r18-w16_scenes-6-2-2_step0.py']

split = 'joint'
model = dict(split=split)
train_dataloader = dict(dataset=dict(split=split))
val_dataloader = dict(dataset=dict(split=split))
test_dataloader = val_dataloader
val_evaluator = dict(num_base_classes=6)
test_evaluator = val_evaluator
