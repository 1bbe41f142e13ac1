# KD fine-tune of the Tucker-2 (1x1 + k x k core + 1x1) decomposition
# (_base_/decomposed_kd.py): the decomposed model (tucker2_fmnist.py) is the
# student, the undecomposed trained model the teacher.
_base_ = ['./_base_/decomposed_kd.py', './_base_/plan_tucker2.py']

model = dict(
    student=dict(config='{{ fileDirname }}/tucker2_fmnist.py'),
    teacher=dict(config='{{ fileDirname }}/resnet18-w16_fmnist.py'),
)
