# RankMixup M-NDCG with the official settings (loss weight 0.1, M = 3 mixed
# copies, Beta(2, 2)) and the mixed copies normalized by the raw batch's
# batch-norm statistics (mixed_bn_stats='raw'; the running statistics see raw
# batches only). The demo's RankMixup stage (tools/demo.py) is this config with
# the demo student's optimizer (rankmixup-mndcg-rawbn-fmnistsgd_*).
_base_ = ['./rankmixup-mndcg_resnet18-w8_fmnist.py']

model = dict(mixed_bn_stats='raw')
