# OICR on the fashion scenes with its backbone initialised from the LSE-pooled
# image-level classifier of imgcls-lse_r18-w32-fmnistinit_scenes.py
# (itself from the Fashion-MNIST classifier; same image-level labels,
# no boxes; it stands in for the official code's ImageNet-pretrained VGG16,
# docs/models/casd.md). Train the classifier first:
#   python tools/train.py configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py
#   python tools/train.py configs/wsod/mmdet/imgcls-lse_r18-w32-fmnistinit_scenes.py
#   python tools/train.py configs/wsod/mmdet/oicr_r18-w32-clslseinit_scenes.py
_base_ = ['./oicr_r18-w32_scenes.py']

# the classifier's fc is not part of OICR: loaded without it (strict=False)
load_from = 'work_dirs/imgcls-lse_r18-w32-fmnistinit_scenes/iter_3000.pth'
# the detector's MIDN / refinement head is not in the classifier: random init
allow_unloaded_weights = ['head']
