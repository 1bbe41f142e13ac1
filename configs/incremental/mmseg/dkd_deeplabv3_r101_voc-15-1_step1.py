# DKD, VOC 15-1 overlapped, step 1: class 16 (schedule of 15-5's step 1).
_base_ = ['./dkd_deeplabv3_r101_voc-15-5_step1.py']

split = '15-1'
model = dict(split=split)
train_dataloader = dict(dataset=dict(split=split))
val_dataloader = dict(dataset=dict(split=split))
test_dataloader = val_dataloader
load_from = 'work_dirs/dkd_deeplabv3_r101_voc-15-1_step0/epoch_60.pth'
