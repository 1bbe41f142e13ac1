# RankMixup with the M-NDCG loss on M = 3 mixed copies (Beta(2, 2)):
# CE on the raw batch + 0.1 * (1 - nDCG).
_base_ = ['./ce_resnet18-w8_fmnist.py']

model = dict(
    type='RankMixupClassifier',
    rank_loss=dict(type='MixupNDCGLoss', loss_weight=0.1),
    num_mixup=3,
    mixup_alpha=2.0,
)
