# Low-bit training and distillation in one config: the W4A4G4 LBT student
# (lbt_w4a4g4_fmnist.py) trained with cross-entropy + vanilla KD from the float
# ResNet-18 w16 teacher (lsq_w4a4_kd_fmnist.py). The gradient quantizers sit
# on the student's quantized layers only: the KD loss's error reaches them like
# the cross-entropy's; the teacher runs float, without gradients.
# Teacher checkpoint: train configs/baselines/mmpretrain/fmnist_teacher.py first.
# Train: python tools/train.py configs/quant/mmpretrain/lbt_w4a4g4_kd_fmnist.py
_base_ = ['./lsq_w4a4_kd_fmnist.py']

model = dict(
    student=dict(quant=dict(g=dict(type='LBTGradQuantizer', bits=4, interval='lbt')))
)
custom_hooks = [dict(type='LBTIntervalInitHook')]
