# The trained Fashion-MNIST ResNet-18 w16 decomposed by channel SVD (k x k conv
# to rank r + 1x1) at 20% of its FLOPs: the plan (_base_/plan_svd.py) is what
# tools/decompose.py chose from work_dirs/resnet18-w16_fmnist/epoch_4.pth;
# fine-tuned with cross-entropy (_base_/decomposed_finetune.py).
_base_ = ['./_base_/decomposed_finetune.py', './_base_/plan_svd.py']

model = dict(plan={{_base_.plan}})
