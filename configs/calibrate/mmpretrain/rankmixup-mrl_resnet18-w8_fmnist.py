# RankMixup with the mixup margin ranking loss (MRL): CE on the raw batch +
# 0.1 * MRL(margin 2) on one mixed copy (Beta(2, 2)). faithful_broadcast=True
# reproduces the official code's mask broadcasting (mask acts as a global
# scale); see rankmixup-mrl-perpair_* for the per-pair variant.
_base_ = ['./ce_resnet18-w8_fmnist.py']

model = dict(
    type='RankMixupClassifier',
    rank_loss=dict(
        type='MixupMarginRankingLoss',
        margin=2.0,
        loss_weight=0.1,
        faithful_broadcast=True,
    ),
    num_mixup=1,
    mixup_alpha=2.0,
)
