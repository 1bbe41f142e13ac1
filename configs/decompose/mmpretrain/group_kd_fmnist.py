# KD fine-tune of the filter-group approximation (group conv + 1x1 mixing)
# decomposition (_base_/decomposed_kd.py): the decomposed model (group_fmnist.py)
# is the student, the undecomposed trained model the teacher.
_base_ = ['./_base_/decomposed_kd.py', './_base_/plan_group.py']

model = dict(
    student=dict(config='{{ fileDirname }}/group_fmnist.py'),
    teacher=dict(config='{{ fileDirname }}/resnet18-w16_fmnist.py'),
)
