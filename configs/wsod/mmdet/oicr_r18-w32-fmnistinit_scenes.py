# OICR on the fashion scenes with its backbone initialised from the Fashion-MNIST
# classifier of configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py (garment items
# with class labels, no scenes, no boxes: the stand-in for the official code's
# ImageNet-pretrained VGG16, docs/models/casd.md). Train the classifier first:
#   python tools/train.py configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py
#   (mmpretrain's tools/train.py), then this config with mmdet's.
_base_ = ['./oicr_r18-w32_scenes.py']

# the classifier's head is not part of OICR: loaded without it (strict=False)
load_from = 'work_dirs/fmnist-pretrain_r18-w32/iter_1500.pth'
# the detector's MIDN / refinement head is not in the classifier: random init
allow_unloaded_weights = ['head']
