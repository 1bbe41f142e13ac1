# Student for Fashion-MNIST: mmpretrain's CIFAR-style ResNet-18 cut to 3 stages
# of widths 8/16/32 (0.045 M parameters, ~15x fewer than the teacher), 1-channel
# input.
_base_ = 'mmpretrain::_base_/models/resnet18_cifar.py'

model = dict(
    backbone=dict(
        in_channels=1,
        stem_channels=8,
        base_channels=8,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
    ),
    head=dict(in_channels=32),
)
