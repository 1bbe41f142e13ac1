# RankMixup MRL with the official settings (margin 2, loss weight 0.1, Beta(2, 2))
# and the mixed copies normalized by the raw batch's batch-norm statistics
# (mixed_bn_stats='raw'; the running statistics see raw batches only). The
# demo's RankMixup stage is the M-NDCG variant (rankmixup-mndcg-rawbn_*,
# chosen at the demo's size: docs/calibrate/tuning.md). With the official own-batch
# statistics of the mixed forward, a strong ranking loss can be met through
# the batch statistics alone; see docs/calibrate/README.md.
_base_ = ['./rankmixup-mrl_resnet18-w8_fmnist.py']

model = dict(mixed_bn_stats='raw')
