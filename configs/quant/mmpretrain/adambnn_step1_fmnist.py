# AdamBNN step 1 (spec section 5b) on Fashion-MNIST: a small ReActNet (ReActNet-A
# blocks: RSign, RPReLU, 3x3 + 1x1 convs with shortcuts) with BINARY ACTIVATIONS and
# REAL-VALUED WEIGHTS, trained from scratch.
# Official recipe (ImageNet, ReActNet-A): Adam (0.9, 0.999), lr 1.25e-3 at batch 256,
# lr decayed linearly to 0 per epoch (LambdaLR 1 - epoch/E), weight decay 5e-6 on
# parameters with ndim == 4 (convs and the ReActNet shifts) only, 256 epochs, loss:
# KD from a real-valued teacher (see adambnn_step2_kd_fmnist.py; here cross-entropy).
# CPU-sized: 4 epochs on a 20k class-balanced subset of the training split.
# Step 2 (adambnn_step2_fmnist.py) starts from this run's last checkpoint.
_base_ = [
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/default_runtime_cls.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ReActNet',
        arch='fmnist',
        in_channels=1,
        binary_activations=True,
        binary_weights=False,
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ),
)

train_dataloader = dict(dataset=dict(subset_size=20000))

max_epochs = 4
# Official weight-decay rule: decay only parameters with ndim == 4 or 'conv' in
# the name. Here: BN (norm_decay_mult), PReLU slopes and the classifier get 0;
# convs (incl. the stem), RSign shifts and RPReLU shifts get weight_decay.
optim_wrapper = dict(
    optimizer=dict(type='Adam', lr=1.25e-3, betas=(0.9, 0.999), weight_decay=5e-6),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={'.prelu.': dict(decay_mult=0.0), 'head.': dict(decay_mult=0.0)},
    ),
)
# lr(epoch) = base_lr * (1 - epoch / max_epochs), stepped per epoch (official
# LambdaLR). mmengine's LinearLR reaches end_factor at its last epoch, end - 1,
# hence end = max_epochs + 1.
param_scheduler = dict(
    type='LinearLR',
    start_factor=1.0,
    end_factor=0.0,
    by_epoch=True,
    begin=0,
    end=max_epochs + 1,
)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)
