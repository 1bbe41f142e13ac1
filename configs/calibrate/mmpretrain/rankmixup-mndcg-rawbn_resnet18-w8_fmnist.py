# RankMixup M-NDCG with the official settings (loss weight 0.1, M = 3 mixed
# copies, Beta(2, 2)) and the mixed copies normalized by the raw batch's
# batch-norm statistics (mixed_bn_stats='raw'; the running statistics see raw
# batches only): the demo's RankMixup stage (tools/demo.py), chosen on the
# validation split at the demo's size (docs/calibrate/tuning.md, section 5).
_base_ = ['./rankmixup-mndcg_resnet18-w8_fmnist.py']

model = dict(mixed_bn_stats='raw')
