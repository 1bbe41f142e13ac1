# Float reference and QAT starting point: the Fashion-MNIST student
# (CIFAR-style ResNet-18, widths 8/16/32), SGD + cosine, 8 epochs.
# Train: python tools/train.py configs/quant/mmpretrain/fp32_resnet18-w8_fmnist.py
# The QAT configs next to this file load work_dirs/fp32_resnet18-w8_fmnist/epoch_8.pth.
_base_ = [
    '../../_base_/models/fmnist_resnet18-w8_student.py',
    '../../_base_/datasets/fashion_mnist.py',
    '../../_base_/schedules/fmnist_sgd.py',
    '../../_base_/default_runtime_cls.py',
]
