"""FLOPs and parameter counting of a network by forward hooks.

FLOPs here are multiply-accumulates of ``Conv2d`` and ``Linear`` layers (plus one
add per output for a bias), for one input image, the convention of the NB201
benchmark (its TinyNetwork spans 7.78 to 220.1 MFLOPs on 32x32 CIFAR inputs).
BN, activations, pooling and additions are not counted.
"""

from typing import Tuple

import torch
import torch.nn as nn


def count_flops(model: nn.Module, input_shape: Tuple[int, ...] = (3, 32, 32)) -> int:
    """Return conv + linear multiply-accumulates of one forward pass of one image.

    Args:
        model (nn.Module): The network; run in eval mode, no gradients.
        input_shape (tuple): ``(C, H, W)`` of one input. Defaults to (3, 32, 32).

    Returns:
        int: The FLOPs count.
    """
    total = [0]

    def conv_hook(mod: nn.Conv2d, _inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        positions = out.shape[2] * out.shape[3]
        total[0] += (k + (mod.bias is not None)) * mod.out_channels * positions

    def linear_hook(mod: nn.Linear, _inp, out):
        total[0] += (mod.in_features + (mod.bias is not None)) * mod.out_features

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])


def count_params(model: nn.Module) -> int:
    """Return the number of parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))
