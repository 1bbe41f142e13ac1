"""Per-layer latency measured inside the whole integer graph, for a latency
budget in onnxruntime.

:func:`~mmcompress.quant.mixed_precision.layer_latency` times each layer
alone, between a ``QuantizeLinear`` and a ``DequantizeLinear``; on small
layers those conversions dominate and every 8-bit layer looks slower than its
float form, although the whole integer graph runs faster than the float one
(it converts once). :func:`graph_layer_latency` measures what a layer costs
where it runs: the integer graph of the whole network (every candidate layer
8-bit) and, for each layer, the same graph with only that layer float, timed
alternately in onnxruntime. The difference is the latency the layer adds when
it stays float (its float conv and the conversions around it); the table
spreads the integer graph's latency evenly over the layers, so the sum of a
row choice per layer is the additive estimate of the whole graph's latency.
"""

import copy
import functools
import statistics
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from mmcompress.utils.timing import interleaved_ms

from .export import (
    NetworkWrapper,
    export_onnx,
    onnxruntime_session,
    optimize_for_onnxruntime,
)
from .transform import quantize_model


def interleaved_session_ms(sessions: dict, feed: dict, runs: int, warmup: int = 3):
    """Median milliseconds of each onnxruntime session, run alternately.

    Args:
        sessions (dict): ``{key: InferenceSession}``.
        feed (dict): The input feed.
        runs (int): Timed rounds.
        warmup (int): Untimed rounds first. Defaults to 3.

    Returns:
        dict: ``{key: median ms}``.
    """
    calls = {key: functools.partial(s.run, None, feed) for key, s in sessions.items()}
    return interleaved_ms(calls, runs, warmup)


def integer_graph(
    model: nn.Module, example: Tensor, quant: dict, float_layers: Sequence[str] = ()
) -> bytes:
    """The onnxruntime integer graph of ``model``'s network with ``quant``,
    the ``float_layers`` kept float.

    Args:
        model (nn.Module): The float OpenMMLab model (left unchanged).
        example (Tensor): Input of the deployment shape; it also sets the
            quantizer grids and calibrates the grids the rewrite adds.
        quant (dict): ``QuantizedModel``'s ``quant`` options.
        float_layers (Sequence[str]): Layer names (of ``model``) kept float.

    Returns:
        bytes: The ONNX model after :func:`optimize_for_onnxruntime`.
    """
    quant = copy.deepcopy(quant)
    overrides = quant.setdefault('layer_overrides', {})
    overrides.update({name: dict(w=None, a=None) for name in float_layers})
    quantized = quantize_model(copy.deepcopy(model), **quant)
    wrapper = NetworkWrapper(quantized)
    for module in quantized.modules():  # quantizers initialise, BNs stay
        module.training = not isinstance(module, nn.modules.batchnorm._BatchNorm)
    with torch.no_grad():
        wrapper(example)
    quantized.eval()
    blob = export_onnx(
        wrapper,
        example,
        output_names=wrapper.output_names(),
        dynamic_size=example.dim() == 4,
    )
    return optimize_for_onnxruntime(blob, [example])


def graph_layer_latency(
    model: nn.Module,
    example: Tensor,
    layers: Sequence[str],
    quant: dict,
    options: Sequence[Optional[int]] = (None, 8, 4),
    runs: int = 50,
    threads: int = 1,
) -> Dict[str, Dict[Optional[int], float]]:
    """Each layer's latency inside the integer graph (module docstring).

    Args:
        model (nn.Module): The float OpenMMLab model.
        example (Tensor): An input of the deployment shape (batch 1).
        layers (Sequence[str]): The candidate layers (names in ``model``,
            each quantized by ``quant``).
        quant (dict): ``QuantizedModel``'s ``quant`` options.
        options (Sequence): ``None`` (float) and bit widths. Defaults to
            ``(None, 8, 4)``. onnxruntime runs every bit width on its 8-bit
            kernels, so they all get the integer cost.
        runs (int): Timed rounds per layer (the integer graph and the graph
            with that layer float alternately). Defaults to 50.
        threads (int): onnxruntime intra-op threads. Defaults to 1.

    Returns:
        dict: ``{layer: {option: ms}}``: integer options ``T / N`` (``T`` the
        integer graph's median latency, ``N`` the number of layers), float
        ``T / N + max(0, T_layer - T)`` (``T_layer``: the graph with that
        layer float, timed alternately with the integer graph; ``T`` the
        median over those pairs).

    Raises:
        ValueError: ``layers`` is empty.
    """
    if not layers:
        raise ValueError(
            'graph_layer_latency: no layers given; pass the names of the layers '
            'the quant options quantize (quantized_layer_names)'
        )
    feed = {'input': example.numpy()}
    base = onnxruntime_session(integer_graph(model, example, quant), threads)
    bases, added = [], {}
    for name in layers:
        session = onnxruntime_session(
            integer_graph(model, example, quant, [name]), threads
        )
        ms = interleaved_session_ms(dict(base=base, layer=session), feed, runs)
        bases.append(ms['base'])
        added[name] = max(0.0, ms['layer'] - ms['base'])
    share = statistics.median(bases) / len(layers)
    return {
        n: {o: share + added[n] if o is None else share for o in options}
        for n in layers
    }
