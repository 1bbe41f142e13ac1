# DIST (Huang et al., NeurIPS 2022) on Fashion-MNIST: CE plus inter- and
# intra-class Pearson-correlation relations of the softened predictions
# (beta = gamma = 1, loss_weight 2 as the official ImageNet recipe; tau=4 as
# its CIFAR-100 one).
_base_ = './kd_fmnist.py'

model = dict(
    distill=dict(
        _delete_=True,
        dist=dict(
            student='head.fc',
            teacher='head.fc',
            loss=dict(type='DISTLoss', beta=1.0, gamma=1.0, tau=4.0, loss_weight=2.0),
        ),
    )
)
