# FFL (online mutual KD with feature fusion, spec section 7) on Fashion-MNIST:
# a CIFAR-style ResNet-18 (3 stages, widths 8/16/32) whose stem and first two
# stages are shared; two private copies of the last stage, each with a
# classifier, plus the fusion classifier. Prediction: the fused classifier.
# Official recipe (CIFAR-100, ResNet-32): 300 epochs, ramp-up 80 epochs,
# T=3, fusion weight decay 1e-5 vs 1e-4. Here the CPU-sized 8-epoch schedule,
# with the ramp-up scaled to the same fraction of training (80/300 -> 2).
_base_ = [
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/schedules/fmnist_sgd.py',
    '../../_base_/default_runtime_cls.py',
]

model = dict(
    type='FFLClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        in_channels=1,
        stem_channels=8,
        base_channels=8,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
    ),
    num_classes=10,
    split_stage=2,
    num_branches=2,
    temperature=3.0,
    kd_weight=1.0,
    rampup_length=2,
    rampup_unit='epoch',
    predict_from='fused',
)

# official: the fusion module's weight decay is 1/10 of the network's
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'fusion': dict(decay_mult=0.1)}))
