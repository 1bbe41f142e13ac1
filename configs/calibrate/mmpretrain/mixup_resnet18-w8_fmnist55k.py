# Mixup at convergence: the converged Fashion-MNIST student recipe
# (baselines/mmpretrain/student_r18-w8_fmnist55k.py) with the Mixup baseline of
# mixup_resnet18-w8_fmnist.py (mmpretrain's Mixup batch augment, alpha 1, soft
# cross-entropy; every training sample is mixed). The calibration baseline
# RankMixup is compared against (benchmarks/calibration.py --converged).
_base_ = ['../../baselines/mmpretrain/student_r18-w8_fmnist55k.py']

model = dict(
    head=dict(
        loss=dict(
            _delete_=True, type='CrossEntropyLoss', loss_weight=1.0, use_soft=True
        )
    ),
    train_cfg=dict(augments=dict(type='Mixup', alpha=1.0)),
)
val_evaluator = [
    dict(type='Accuracy', topk=(1,)),
    dict(type='ClsCalibrationMetric', num_bins=15),
]
test_evaluator = val_evaluator
