# Fine-tune a trained UN ViT (load_from) with the official tip: the iteration
# counter restarts at 0 so the warm-up runs again (UNIterHook reset_iters).
_base_ = './vit_un_fmnist.py'

custom_hooks = [dict(type='UNIterHook', reset_iters=True)]
max_epochs = 2
# the cosine decay of vit_fmnist.py over these max_epochs, without warm-up
param_scheduler = [dict(_base_.param_scheduler[1], begin=0, end=max_epochs)]
optim_wrapper = dict(optimizer=dict(lr=2e-4))
train_cfg = dict(max_epochs=max_epochs)
load_from = 'work_dirs/vit_un_fmnist/epoch_8.pth'
