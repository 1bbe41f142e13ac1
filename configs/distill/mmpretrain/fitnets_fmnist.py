# FitNets hints on Fashion-MNIST: the student's last stage (layer3, 32 ch,
# 7x7) regresses the teacher's layer3 (64 ch, 7x7) through a 1x1 conv + BN
# adapter built automatically from the shapes; loss = CE + 100 * MSE (the
# mdistiller hint weight), no logit KD.
_base_ = './kd_fmnist.py'

model = dict(
    distill=dict(
        _delete_=True,
        hint=dict(
            student='backbone.layer3',
            teacher='backbone.layer3',
            loss=dict(type='FeatureMSELoss', loss_weight=100.0),
        ),
    )
)
