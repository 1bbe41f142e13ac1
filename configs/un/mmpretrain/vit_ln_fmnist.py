# Small ViT on Fashion-MNIST with LayerNorm (the accuracy reference of UN).
_base_ = './_base_/vit_fmnist.py'
