# Calibration training of a distilled student: the RankMixup-MRL student
# (rankmixup-mrl_resnet18-w8_fmnist.py) trained with vanilla KD (tau 4) from
# the ResNet-18 w16 teacher. Loss = CE(raw) + 0.1 MRL(raw vs mixed) + KD on
# the raw-batch logits (the recorder takes the first call of `head.fc`, which
# is the raw batch; the mixed copies only enter the ranking loss).
# Train the teacher first (configs/baselines/mmpretrain/fmnist_teacher.py) or
# set --cfg-options model.teacher.checkpoint=PATH.
_base_ = ['../../distill/mmpretrain/kd_fmnist.py']

model = dict(
    student=dict(
        _delete_=True, config='{{ fileDirname }}/rankmixup-mrl_resnet18-w8_fmnist.py'
    )
)

optim_wrapper = dict(clip_grad=dict(max_norm=2.0))

val_evaluator = [
    dict(type='Accuracy', topk=(1,)),
    dict(type='ClsCalibrationMetric', num_bins=15),
]
test_evaluator = val_evaluator
# reliability diagram of every evaluation, to the visualizer backends
# (vis_data/vis_image/calibration_reliability_{val,test}_<step>.png)
custom_hooks = [dict(type='ReliabilityDiagramHook')]
