# Decoupled KD with the official code's ImageNet setting (mdistiller
# ResNet-34 -> ResNet-18: alpha=1, beta=0.5, tau=1, one warm-up epoch):
# a distillation loss of the order of the CE loss from the first iteration,
# for short schedules. dkd_fmnist.py keeps the CIFAR-100 setting (beta=8,
# tau=4), whose loss is ~10x the CE loss. docs/distill/accuracy.md compares
# both on Fashion-MNIST.
_base_ = './dkd_fmnist.py'

model = dict(distill=dict(dkd=dict(loss=dict(alpha=1.0, beta=0.5, tau=1.0))))
