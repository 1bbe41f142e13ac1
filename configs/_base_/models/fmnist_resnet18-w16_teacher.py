# Teacher for Fashion-MNIST: mmpretrain's CIFAR-style ResNet-18 (3x3 stem, no
# max-pool) at 4 stages of widths 16/32/64/128 (0.69 M parameters), 1-channel input.
_base_ = 'mmpretrain::_base_/models/resnet18_cifar.py'

model = dict(
    backbone=dict(in_channels=1, stem_channels=16, base_channels=16),
    head=dict(in_channels=128),
)
