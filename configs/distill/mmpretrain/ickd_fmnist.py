# ICKD-C (Liu et al., ICCV 2021) on Fashion-MNIST: inter-channel correlation
# of the last feature map before pooling, with the student embedded by a
# 1x1 conv (no bias) + BN to the teacher's channels (layer3: 32 -> 64 ch),
# plus vanilla KD; official CIFAR-100 weights: CE 1, KL 1 (tau=4), ICKD 2.5.
_base_ = './kd_fmnist.py'

model = dict(
    distill=dict(
        _delete_=True,
        kd=dict(
            student='head.fc',
            teacher='head.fc',
            loss=dict(type='VanillaKDLoss', tau=4.0, loss_weight=1.0),
        ),
        ickd=dict(
            student='backbone.layer3',
            teacher='backbone.layer3',
            adapter=dict(type='ConvBNAdapter'),
            loss=dict(type='ICKDLoss', normalization='cifar', loss_weight=2.5),
        ),
    )
)
