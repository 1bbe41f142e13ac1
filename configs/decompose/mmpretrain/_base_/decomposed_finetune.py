# What {group,svd,tucker2}_fmnist.py share: the trained Fashion-MNIST ResNet-18
# w16 (../resnet18-w16_fmnist.py) as a DecomposedModel (the config that inherits
# this one adds the plan of tools/decompose.py), load_from the float checkpoint
# (the DecomposedConv2d load hook initialises the decomposed layers from its
# weights) and a 1-epoch cross-entropy fine-tune on a 2k subset: lr 0.01, cosine
# decay to 1e-4 without warm-up. Stock tools/test.py evaluates its checkpoints.
_base_ = ['../resnet18-w16_fmnist.py']

model = dict(
    _delete_=True,
    type='DecomposedModel',
    model={{_base_.model}},
)
load_from = 'work_dirs/resnet18-w16_fmnist/epoch_4.pth'
max_epochs = 1
optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [dict(_base_.param_scheduler[1], begin=0, end=max_epochs)]
train_dataloader = dict(dataset=dict(subset_size=2000))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
