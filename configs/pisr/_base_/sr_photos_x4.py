# The x4 variant of sr_photos_x2.py: LR patches of 16 px (HR 64).
_base_ = './sr_photos_x2.py'

scale = 4
train_dataloader = dict(dataset=dict(scale=scale, patch_size=64))
val_dataloader = dict(dataset=dict(scale=scale))
test_dataloader = val_dataloader
val_evaluator = dict(crop_border=scale)
test_evaluator = val_evaluator
