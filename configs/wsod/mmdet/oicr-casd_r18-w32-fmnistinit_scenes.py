# OICR + CASD (IW + LW) with the backbone initialised from the Fashion-MNIST
# classifier, as oicr_r18-w32-fmnistinit_scenes.py (docs/models/casd.md).
_base_ = ['./oicr-casd_r18-w32_scenes.py']

load_from = 'work_dirs/fmnist-pretrain_r18-w32/iter_1500.pth'
# the detector's MIDN / refinement head is not in the classifier: random init
allow_unloaded_weights = ['head']
