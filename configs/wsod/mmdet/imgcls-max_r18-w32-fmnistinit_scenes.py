# The max-pooled scenes classifier (imgcls-max_r18-w32_scenes.py) with its backbone
# initialised from the Fashion-MNIST classifier (garment items, no scenes): the
# backbone of the *-clsmaxinit OICR / CASD configs (docs/models/casd.md).
#   python tools/train.py configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py
#   python tools/train.py configs/wsod/mmdet/imgcls-max_r18-w32-fmnistinit_scenes.py
_base_ = ['./imgcls-max_r18-w32_scenes.py']

load_from = 'work_dirs/fmnist-pretrain_r18-w32/iter_1500.pth'
# the Fashion-MNIST classifier's head (head.fc) is not this model's linear layer
allow_unloaded_weights = ['fc']
