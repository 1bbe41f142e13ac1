# RankMixup MRL at convergence: the converged Fashion-MNIST student recipe
# (baselines/mmpretrain/student_r18-w8_fmnist55k.py: 55k train split, crop +
# flip, 15 epochs, nesterov SGD 0.1, one warm-up epoch then cosine) with the
# official CIFAR MRL setting of rankmixup-mrl_resnet18-w8_fmnist.py (CE on the
# raw batch + 0.1 * MRL(margin 2) on one mixed copy, Beta(2, 2)). Only the loss
# differs from the converged CE student, so that student is this config's CE
# baseline (benchmarks/calibration.py --converged). Calibration metrics are
# logged next to top-1 at every validation.
_base_ = ['../../baselines/mmpretrain/student_r18-w8_fmnist55k.py']

model = dict(
    type='RankMixupClassifier',
    rank_loss=dict(
        type='MixupMarginRankingLoss',
        margin=2.0,
        loss_weight=0.1,
        faithful_broadcast=True,
    ),
    num_mixup=1,
    mixup_alpha=2.0,
)
val_evaluator = [
    dict(type='Accuracy', topk=(1,)),
    dict(type='ClsCalibrationMetric', num_bins=15),
]
test_evaluator = val_evaluator
