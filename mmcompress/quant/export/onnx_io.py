"""Writing a QAT model as an ONNX QDQ graph.

:func:`export_onnx` converts the model (:func:`~.modules.convert_for_export`),
runs ``torch.onnx.export`` and folds each weight ``QuantizeLinear`` of a
constant into an integer initializer, so the graph holds int8 weights read by
``DequantizeLinear`` and runs on onnxruntime's integer kernels.

Limits (clear errors): quantizers that are not affine (N2UQ's learned
thresholds) cannot be written as QDQ; weight grids that need more than int8
(EWGS / DAQ / N2UQ 8-bit weights use the 2^8 odd levels ``-255..255``) cannot
either; gradient quantizers are training-only and dropped.
"""

import io
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .modules import convert_for_export
from .network import NetworkWrapper
from .onnx_graph import OnnxGraph


def _fold_weight_quantize_nodes(onnx_model) -> int:
    """Replace ``QuantizeLinear(constant)`` by an integer initializer."""
    import numpy as np

    g = OnnxGraph(onnx_model)
    folded, removed = 0, []
    for node in g.graph.node:
        if node.op_type != 'QuantizeLinear':
            continue
        data, scale = g.value(node.input[0]), g.value(node.input[1])
        zero = g.value(node.input[2]) if len(node.input) > 2 else None
        if data is None or scale is None or zero is None:
            continue
        axis = next((a.i for a in node.attribute if a.name == 'axis'), 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * data.ndim
            shape[axis] = -1
            scale_v, zero_v = scale.reshape(shape), zero.reshape(shape)
        else:
            scale_v, zero_v = scale, zero
        info = np.iinfo(zero.dtype)
        integer = np.clip(
            np.rint(data / scale_v) + zero_v.astype(np.int64), info.min, info.max
        ).astype(zero.dtype)
        name = g.add_init(integer, node.output[0] + '_int')
        for other in g.consumers(node.output[0]):
            g.replace_input(other, node.output[0], name)
        removed.append(node)
        folded += 1
    for node in removed:
        g.graph.node.remove(node)
    g.remove_unused_initializers()
    return folded


def _expectation(module: nn.Module) -> str:
    """What input a conv / linear layer takes, in words ('' for others)."""
    weight = getattr(module, 'weight', None)
    if hasattr(module, 'in_channels') and isinstance(weight, Tensor):
        return (
            f'{weight.dim()}-d input (N, {module.in_channels}, ...) '
            f'with {module.in_channels} channels'
        )
    if hasattr(module, 'in_features'):
        return f'input whose last dimension is {module.in_features}'
    return ''


def check_example_input(model: nn.Module, example_input: Tensor) -> None:
    """Run ``example_input`` through ``model`` once (eval, no gradient) and
    turn a shape failure into one clear error.

    Args:
        model (nn.Module): The model to export (one tensor in; layers are
            named inside the model a :class:`TensorModeWrapper` or
            :class:`~.network.NetworkWrapper` wraps).
        example_input (Tensor): The example input.

    Raises:
        ValueError: The input does not fit the model: names the shape given,
            the layer that refused it and what that layer takes.
    """
    active = []  # modules whose forward is running, outermost first

    def enter(module, inputs):
        active.append(module)

    def leave(module, inputs, output):
        if active and active[-1] is module:
            active.pop()

    root = (
        model.model if isinstance(model, (TensorModeWrapper, NetworkWrapper)) else model
    )
    names = {m: n for n, m in root.named_modules()}
    handles = [m.register_forward_pre_hook(enter) for m in model.modules()]
    handles += [m.register_forward_hook(leave) for m in model.modules()]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    except RuntimeError as error:
        cause = str(error).strip().splitlines()[0]
        # the innermost running layer with an input size, else the innermost
        layer = next(
            (m for m in reversed(active) if _expectation(m)),
            active[-1] if active else model,
        )
        what = f'{names.get(layer) or "the model"} ({type(layer).__name__})'
        where = (
            f'{what} takes {_expectation(layer)}'
            if _expectation(layer)
            else f'{what} failed'
        )
        raise ValueError(
            f'the example input of shape {tuple(example_input.shape)} does not '
            f'fit the model: {where} (torch: {cause})'
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode


def export_onnx(
    model: nn.Module,
    example_input: Tensor,
    path: Optional[str] = None,
    opset_version: int = 17,
    input_names: Sequence[str] = ('input',),
    output_names: Sequence[str] = ('output',),
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    quantized: bool = True,
):
    """Export a QAT model to ONNX QDQ.

    The example input first runs through the model once
    (:func:`check_example_input`), so a wrong shape is one clear error.

    Args:
        model (nn.Module): Module mapping one tensor to a tensor (wrap an
            OpenMMLab model with :class:`TensorModeWrapper`).
        example_input (Tensor): An input of the right shape.
        path (str, optional): Where to write the ``.onnx`` file; the bytes
            are returned either way.
        opset_version (int): ONNX opset (>= 13 for per-channel). Defaults
            to 17.
        input_names, output_names (Sequence[str]): Graph I/O names.
        dynamic_batch (bool): Make the batch dimension dynamic.
        dynamic_size (bool): Also make the height and width (dimensions 2
            and 3 of the input and of every output) dynamic, for detectors and
            segmentors whose test images keep their aspect ratio. Defaults to
            False.
        quantized (bool): The model is a QAT model (refused when it holds
            no quantized layer). False exports a float model as it is (the
            FP32 reference of a benchmark). Defaults to True.

    Returns:
        bytes: The serialized ONNX model.
    """
    check_example_input(model, example_input)
    import onnx

    converted = convert_for_export(model, example_input) if quantized else model
    buffer = io.BytesIO()
    axes = {n: {} for n in (*input_names, *output_names)}
    for name, dims in axes.items():
        if dynamic_batch:
            dims[0] = 'batch'
        if dynamic_size:
            dims.update({2: f'{name}_height', 3: f'{name}_width'})
    axes = axes if dynamic_batch or dynamic_size else None
    torch.onnx.export(
        converted,
        (example_input,),
        buffer,
        dynamo=False,
        opset_version=opset_version,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_axes=axes,
        do_constant_folding=True,
    )
    onnx_model = onnx.load_from_string(buffer.getvalue())
    _fold_weight_quantize_nodes(onnx_model)
    onnx.checker.check_model(onnx_model)
    data = onnx_model.SerializeToString()
    if path is not None:
        with open(path, 'wb') as file:
            file.write(data)
    return data


class TensorModeWrapper(nn.Module):
    """Call an OpenMMLab model with ``mode='tensor'`` (raw head outputs).

    Args:
        model (nn.Module): An mmengine ``BaseModel``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor):
        return self.model(inputs, mode='tensor')
