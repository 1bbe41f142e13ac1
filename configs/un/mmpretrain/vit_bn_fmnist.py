# Small ViT on Fashion-MNIST with BatchNorm over the tokens (TokenBN): the
# foldable baseline UN is compared with.
_base_ = './_base_/vit_fmnist.py'

model = dict(backbone=dict(norm_cfg=dict(_delete_=True, type='TokenBN')))
