# A MobileNetV2-style network of the `mbv2` search space (stage widths 16/24/32/64,
# per-stage depth / kernel / expansion) trained on Fashion-MNIST with CE.
# tools/search.py --space mbv2 writes a copy of this config with the searched `arch`.
_base_ = [
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/schedules/fmnist_sgd.py',
    '../../_base_/default_runtime_cls.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MobileNetSpaceBackbone',
        arch='d1k3e6-d2k3e6-d2k3e6-d1k3e6',
        widths=(16, 24, 32, 64),
        strides=(1, 2, 2, 1),
        stem=16,
        in_channels=1,
    ),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ),
)
