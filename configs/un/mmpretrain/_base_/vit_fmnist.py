# A small mmpretrain VisionTransformer for Fashion-MNIST (28x28, patch 4 -> 49
# tokens + class token, 4 layers of width 64, 4 heads; 0.14 M parameters) with
# AdamW and a cosine schedule. The norm layer is chosen by the configs that
# inherit this one (norm_cfg of the backbone).
_base_ = [
    'mmpretrain::_base_/models/vit-base-p16.py',
    '../../../_base_/datasets/fashion_mnist.py',
    '../../../_base_/schedules/fmnist_sgd.py',
    '../../../_base_/default_runtime_cls.py',
]

norm_cfg = dict(type='LN', eps=1e-6)
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=64,
            num_layers=4,
            num_heads=4,
            feedforward_channels=128,
        ),
        img_size=28,
        patch_size=4,
        in_channels=1,
        drop_rate=0.0,
        norm_cfg=norm_cfg,
    ),
    head=dict(
        num_classes=10,
        in_channels=64,
        loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0),
    ),
)

# the schedule of _base_/schedules/fmnist_sgd.py (8 epochs: warm-up epoch, cosine
# decay) with AdamW and the cosine decaying to 1e-5
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(_base_.param_scheduler[0]),
    dict(_base_.param_scheduler[1], eta_min=1e-5),
]
