# Focal loss baseline: softmax focal loss with gamma = 3 (mmpretrain's
# FocalLoss is the sigmoid/multi-label variant, hence SoftmaxFocalLoss).
_base_ = ['./ce_resnet18-w8_fmnist.py']

model = dict(head=dict(loss=dict(_delete_=True, type='SoftmaxFocalLoss', gamma=3.0)))
