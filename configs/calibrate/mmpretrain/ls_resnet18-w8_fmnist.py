# Label smoothing baseline (mmpretrain's LabelSmoothLoss, 'original' mode:
# target = (1 - eps) * onehot + eps / K); eps = 0.2 as the RankMixup
# repository's LS baseline.
_base_ = ['./ce_resnet18-w8_fmnist.py']

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='LabelSmoothLoss',
            label_smooth_val=0.2,
            mode='original',
            loss_weight=1.0,
        )
    )
)
