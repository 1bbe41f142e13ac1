# RankMixup MRL, "short-schedule" setting for small Fashion-MNIST runs: the
# official CIFAR recipe (rankmixup-mrl_resnet18-w8_fmnist.py: loss weight 0.1,
# margin 2, Beta(2, 2)) with loss weight 1 and Beta(0.5, 0.5) mixing, selected
# on the validation split by benchmarks/calibration_sweep.py at the benchmark
# budget (500 training images, 30 epochs, no augmentation; see
# docs/calibrate/tuning.md). The official setting stays the default config:
# this one is tuned for that small-data regime only.
_base_ = ['./rankmixup-mrl_resnet18-w8_fmnist.py']

model = dict(rank_loss=dict(loss_weight=1.0), mixup_alpha=0.5)
