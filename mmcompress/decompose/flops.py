"""FLOPs of conv and linear layers, counted on one forward.

Convention (mmengine's ``get_model_complexity_info`` and most compression
papers): one multiply-accumulate is one FLOP, only ``Conv2d`` / ``Linear``
count (BN, activations, pooling and additions are left out), per input
sample (the batch size divides out).
"""

from typing import Dict, Tuple

import torch
from torch import nn


def conv_flops(
    in_channels: int,
    out_channels: int,
    kernel: Tuple[int, int],
    out_hw: Tuple[int, int],
    groups: int = 1,
) -> int:
    """MACs of one conv on one sample.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel (tuple[int, int]): Kernel size.
        out_hw (tuple[int, int]): Output height and width.
        groups (int): Conv groups. Defaults to 1.

    Returns:
        int: ``H_out * W_out * out_channels * in_channels / groups * kh * kw``.
    """
    return (
        out_hw[0]
        * out_hw[1]
        * out_channels
        * (in_channels // groups)
        * kernel[0]
        * kernel[1]
    )


def count_flops(model: nn.Module, inputs: tuple) -> Dict[str, dict]:
    """Per-layer FLOPs of every ``Conv2d`` / ``Linear`` on one forward.

    Args:
        model (nn.Module): The model (called as ``model(*inputs)`` under
            ``torch.no_grad``; an OpenMMLab model runs ``mode='tensor'``).
        inputs (tuple): The forward's arguments (the batch is divided out).

    Returns:
        dict: ``{layer name: dict(flops, in_hw, out_hw)}`` in call order
        (``in_hw`` / ``out_hw`` are None for Linear). A layer called twice
        sums its calls.
    """
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    batch = inputs[0].shape[0]
    table, handles = {}, []

    def record(name):
        def hook(module, args, output):
            entry = table.setdefault(name, dict(flops=0, in_hw=None, out_hw=None))
            if isinstance(module, nn.Conv2d):
                out_hw = tuple(output.shape[-2:])
                entry['in_hw'] = tuple(args[0].shape[-2:])
                entry['out_hw'] = out_hw
                entry['flops'] += conv_flops(
                    module.in_channels,
                    module.out_channels,
                    module.kernel_size,
                    out_hw,
                    module.groups,
                )
            else:
                rows = output.numel() // output.shape[-1] // batch
                entry['flops'] += rows * module.in_features * module.out_features

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return table


def total_flops(model: nn.Module, inputs: tuple) -> int:
    """Sum of :func:`count_flops` over the layers.

    Args:
        model (nn.Module): The model.
        inputs (tuple): The forward's arguments.

    Returns:
        int: FLOPs (MACs) per sample.
    """
    return sum(entry['flops'] for entry in count_flops(model, inputs).values())
