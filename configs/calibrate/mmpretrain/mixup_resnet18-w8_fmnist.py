# Mixup baseline: mmpretrain's Mixup batch augment (alpha = 1) with a soft
# cross-entropy. Every training sample is mixed (no raw-sample CE).
_base_ = ['./ce_resnet18-w8_fmnist.py']

model = dict(
    head=dict(
        loss=dict(
            _delete_=True, type='CrossEntropyLoss', loss_weight=1.0, use_soft=True
        )
    ),
    train_cfg=dict(augments=dict(type='Mixup', alpha=1.0)),
)
