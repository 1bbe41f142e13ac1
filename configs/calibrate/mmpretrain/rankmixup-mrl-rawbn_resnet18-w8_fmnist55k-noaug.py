# RankMixup MRL with raw-batch BN statistics at convergence
# (rankmixup-mrl-rawbn_resnet18-w8_fmnist55k.py) without data augmentation: the
# RankMixup counterpart of ce_resnet18-w8_fmnist55k-noaug.py (only the loss
# differs). Trained by benchmarks/fmnist_converged.py --models
# student_rankmixup_rawbn_noaug.
_base_ = ['./rankmixup-mrl-rawbn_resnet18-w8_fmnist55k.py']

train_dataloader = dict(dataset=dict(pipeline=[dict(type='PackInputs')]))
