# RankMixup MRL at convergence in the official CIFAR setting (own-batch BN
# statistics of the mixed forward; rankmixup-mrl_resnet18-w8_fmnist55k.py)
# without data augmentation: the official counterpart of
# rankmixup-mrl-rawbn_resnet18-w8_fmnist55k-noaug.py. Trained by
# benchmarks/fmnist_converged.py --models student_rankmixup_noaug; measured by
# benchmarks/calibration.py --converged --methods mrl-noaug mrl+bn-noaug (the
# second re-estimates the BN running statistics after training).
_base_ = ['./rankmixup-mrl_resnet18-w8_fmnist55k.py']

train_dataloader = dict(dataset=dict(pipeline=[dict(type='PackInputs')]))
