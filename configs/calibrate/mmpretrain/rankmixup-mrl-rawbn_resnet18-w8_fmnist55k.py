# RankMixup MRL at convergence with the mixed copies normalized by the raw
# batch's batch-norm statistics (mixed_bn_stats='raw'; running statistics from
# raw batches only): rankmixup-mrl_resnet18-w8_fmnist55k.py otherwise. With the
# official own-batch statistics the converged model ends under-confident; see
# docs/calibrate/converged.md.
_base_ = ['./rankmixup-mrl_resnet18-w8_fmnist55k.py']

model = dict(mixed_bn_stats='raw')
