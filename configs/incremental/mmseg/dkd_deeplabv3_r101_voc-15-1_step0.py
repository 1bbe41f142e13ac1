# DKD, VOC 15-1 overlapped (6 steps), step 0: as 15-5's step 0.
# Whole split: python tools/ciss.py <this config>  (steps 2-5 derive from step1)
_base_ = ['./dkd_deeplabv3_r101_voc-15-5_step0.py']

split = '15-1'
model = dict(split=split)
train_dataloader = dict(dataset=dict(split=split))
val_dataloader = dict(dataset=dict(split=split))
test_dataloader = val_dataloader
