# Fine-tune a trained UN ViT (load_from) with the official tip: the iteration
# counter restarts at 0 so the warm-up runs again (UNIterHook reset_iters).
_base_ = './vit_un_fmnist.py'

custom_hooks = [dict(type='UNIterHook', reset_iters=True)]
max_epochs = 2
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        eta_min=1e-5,
        convert_to_iter_based=True,
    ),
]
optim_wrapper = dict(optimizer=dict(lr=2e-4))
train_cfg = dict(max_epochs=max_epochs)
load_from = 'work_dirs/vit_un_fmnist/epoch_8.pth'
