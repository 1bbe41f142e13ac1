# OICR + CASD (IW + LW) with the backbone initialised from the LSE-pooled
# image-level classifier, as oicr_r18-w32-clslseinit_scenes.py
# (docs/models/casd.md).
#   python tools/train.py configs/wsod/mmpretrain/fmnist-pretrain_r18-w32.py
#   python tools/train.py configs/wsod/mmdet/imgcls-lse_r18-w32-fmnistinit_scenes.py
#   python tools/train.py configs/wsod/mmdet/oicr-casd_r18-w32-clslseinit_scenes.py
_base_ = ['./oicr-casd_r18-w32_scenes.py']

load_from = 'work_dirs/imgcls-lse_r18-w32-fmnistinit_scenes/iter_3000.pth'
# the detector's MIDN / refinement head is not in the classifier: random init
allow_unloaded_weights = ['head']
