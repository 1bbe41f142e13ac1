# An NB201 cell network (TinyNetwork C=16, N=5) trained on Fashion-MNIST with CE.
# tools/search.py writes a copy of this config with the searched `arch`.
_base_ = [
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/schedules/fmnist_sgd.py',
    '../../_base_/default_runtime_cls.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='NB201Backbone',
        arch='|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|'
        '+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|',
        C=16,
        N=5,
        in_channels=1,
    ),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ),
)
