# KD fine-tune of the channel SVD (k x k conv to rank r + 1x1) decomposition
# (_base_/decomposed_kd.py): the decomposed model (svd_fmnist.py) is the
# student, the undecomposed trained model the teacher.
_base_ = ['./_base_/decomposed_kd.py', './_base_/plan_svd.py']

model = dict(
    student=dict(config='{{ fileDirname }}/svd_fmnist.py'),
    teacher=dict(config='{{ fileDirname }}/resnet18-w16_fmnist.py'),
)
