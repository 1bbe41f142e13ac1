# Cross-entropy baseline for the calibration configs: the Fashion-MNIST
# student (CIFAR-style ResNet-18, 3 stages, widths 8/16/32) with calibration
# metrics (ECE/AECE/classwise ECE/NLL/OE/UE) next to Accuracy and a
# reliability diagram per evaluation (ReliabilityDiagramHook).
# Optimizer as the RankMixup recipe: SGD 0.1, momentum 0.9, wd 5e-4,
# gradient-norm clipping at 2 (kept for every method so they compare fairly).
_base_ = [
    '../../_base_/models/fmnist_resnet18-w8_student.py',
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/schedules/fmnist_sgd.py',
    '../../_base_/default_runtime_cls.py',
]

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False),
    clip_grad=dict(max_norm=2.0),
)

val_evaluator = [
    dict(type='Accuracy', topk=(1,)),
    dict(type='ClsCalibrationMetric', num_bins=15),
]
test_evaluator = val_evaluator
# reliability diagram of every evaluation, to the visualizer backends
# (vis_data/vis_image/calibration_reliability_{val,test}_<step>.png)
custom_hooks = [dict(type='ReliabilityDiagramHook')]
