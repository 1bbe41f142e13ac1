"""Per-layer quantization error (SQNR) of a calibrated quantized model, for
``tools/ptq.py --plot``."""

import math
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..quantizers import BaseQuantizer
from .calibration import quant_layers, quantizers_off, tensor_forward


def sqnr_db(reference: Tensor, approx: Tensor) -> float:
    """``10 log10(|ref|^2 / |approx - ref|^2)`` (inf when equal)."""
    signal = reference.double().pow(2).sum().item()
    noise = (approx.double() - reference.double()).pow(2).sum().item()
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-300) / noise)


def layer_sqnr(model: nn.Module, batches: List[dict]) -> Dict[str, Tuple[float, float]]:
    """Per quantized layer: SQNR (dB) of its own quantization and of the model.

    ``own``: the layer with its quantizers on, fed the float model's input,
    vs its float output; ``model``: the layer's output in the quantized model
    (every earlier error included) vs in the float model.

    Args:
        model (nn.Module): Calibrated quantized model.
        batches (list[dict]): Preprocessed batches.

    Returns:
        dict: ``{layer: (own_db, model_db)}`` in module order.
    """
    layers = quant_layers(model)
    float_out = {n: [] for n in layers}
    own_out = {n: [] for n in layers}
    quant_out = {n: [] for n in layers}
    model.eval()

    def record(store, name):
        return lambda module, args, output: store[name].append(output.detach())

    def own(name, layer):
        def hook(module, args, output):
            with quantizers_on(layer):
                own_out[name].append(layer.quant_forward(args[0]).detach())

        return hook

    with torch.no_grad():
        handles = [
            layer.register_forward_hook(own(n, layer)) for n, layer in layers.items()
        ]
        handles += [
            layer.register_forward_hook(record(float_out, n))
            for n, layer in layers.items()
        ]
        with quantizers_off(model):
            for data in batches:
                tensor_forward(model, data)
        for handle in handles:
            handle.remove()
        handles = [
            layer.register_forward_hook(record(quant_out, n))
            for n, layer in layers.items()
        ]
        for data in batches:
            tensor_forward(model, data)
        for handle in handles:
            handle.remove()
    return {
        n: (
            sqnr_db(
                torch.cat([t.flatten() for t in float_out[n]]),
                torch.cat([t.flatten() for t in own_out[n]]),
            ),
            sqnr_db(
                torch.cat([t.flatten() for t in float_out[n]]),
                torch.cat([t.flatten() for t in quant_out[n]]),
            ),
        )
        for n in layers
    }


class quantizers_on:
    """Context: the quantizers of one layer enabled (inside :class:`quantizers_off`)."""

    def __init__(self, layer: nn.Module) -> None:
        self.quantizers = [m for m in layer.modules() if isinstance(m, BaseQuantizer)]

    def __enter__(self):
        self.saved = [(q.enabled, q.calibrating) for q in self.quantizers]
        for q in self.quantizers:
            q.enabled, q.calibrating = True, False
        return self

    def __exit__(self, *exc):
        for q, (enabled, calibrating) in zip(self.quantizers, self.saved):
            q.enabled, q.calibrating = enabled, calibrating
