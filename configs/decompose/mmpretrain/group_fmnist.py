# The trained Fashion-MNIST ResNet-18 w16 decomposed by filter-group
# approximation (group conv + 1x1 mixing) at 20% of its
# FLOPs: the plan (_base_/plan_group.py) is what tools/decompose.py chose from
# work_dirs/resnet18-w16_fmnist/epoch_4.pth; load_from that float checkpoint
# initialises the decomposed layers from its weights (the DecomposedConv2d
# load hook), so this config fine-tunes with cross-entropy as it is and stock
# tools/test.py evaluates its checkpoints.
_base_ = ['./resnet18-w16_fmnist.py', './_base_/plan_group.py']

model = dict(
    _delete_=True,
    type='DecomposedModel',
    model={{_base_.model}},
    plan={{_base_.plan}},
)
load_from = 'work_dirs/resnet18-w16_fmnist/epoch_4.pth'
max_epochs = 1
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        eta_min=1e-4,
        convert_to_iter_based=True,
    ),
]
train_dataloader = dict(dataset=dict(subset_size=2000))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
