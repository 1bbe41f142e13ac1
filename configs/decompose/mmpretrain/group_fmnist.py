# The trained Fashion-MNIST ResNet-18 w16 decomposed by filter-group
# approximation (group conv + 1x1 mixing) at 20% of its FLOPs: the plan
# (_base_/plan_group.py) is what tools/decompose.py chose from
# work_dirs/resnet18-w16_fmnist/epoch_4.pth; fine-tuned with cross-entropy
# (_base_/decomposed_finetune.py).
_base_ = ['./_base_/decomposed_finetune.py', './_base_/plan_group.py']

model = dict(plan={{_base_.plan}})
