# RankMixup MRL, short-schedule setting (loss weight 1, Beta(0.5, 0.5)) with
# the mixed copies normalized by the raw batch's batch-norm statistics
# (mixed_bn_stats='raw'; the running statistics see raw batches only). The
# demo's RankMixup stage (tools/demo.py, 10,000 images, batch 128): with the
# official own-batch statistics of the mixed forward this setting learns to
# meet the ranking loss through the batch statistics and the evaluated model
# is near chance (17 % top-1); see docs/calibrate/README.md.
_base_ = ['./rankmixup-mrl-short_resnet18-w8_fmnist.py']

model = dict(mixed_bn_stats='raw')
