# The scenes classifier from the Fashion-MNIST backbone
# (imgcls-max_r18-w32-fmnistinit_scenes.py) with log-sum-exp pooling of the class
# maps (r = 5: between their mean and their maximum): the backbone of the
# *-clslseinit OICR / CASD configs (docs/models/casd.md).
#   python tools/train.py configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py
#   python tools/train.py configs/wsod/mmdet/imgcls-lse_r18-w32-fmnistinit_scenes.py
_base_ = ['./imgcls-max_r18-w32-fmnistinit_scenes.py']

model = dict(pool='lse', lse_r=5.0)
