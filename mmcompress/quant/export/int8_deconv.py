"""The deconvolution part of the integer-graph rewrite
(:func:`~.int8.optimize_for_onnxruntime`): a quantized ``ConvTranspose`` as
an integer ``Conv`` (sub-pixel decomposition), since onnxruntime's CPU
provider has no integer deconvolution kernel.

A transposed convolution of stride ``s`` computes each block of ``s x s``
neighbouring outputs from one small window of its input. One regular conv on
the un-upsampled input with ``s * s * C_out`` output channels (one group of
``C_out`` per output phase, its kernel re-arranged from the deconv's
weights, zeros where a phase takes no tap), then ``DepthToSpace`` (blocks of
``s x s``, ``DCR``) and a ``Slice`` cropping the border rows and columns,
compute exactly the deconvolution: per axis, with kernel ``K``, padding
``p_b`` / ``p_e`` and output padding ``o``, the conv kernel has
``T = ceil(K / s)`` taps, tap ``t`` of phase ``r`` holding deconv tap
``r + s * (T - 1 - t)`` (zero where that is ``>= K``). Where ``s`` divides
``K`` it does as many multiplications as the deconv (mmpose's heatmap head:
``K = 4, s = 2, p = 1`` gives a 2 x 2 conv with 4 * C_out channels).

The integer weights, their per-channel scales and the int32 bias are those of
the deconv (tiled per phase), so the rewrite changes no value. ``DepthToSpace``
and ``Slice`` only move values: they run on the 8-bit output, between the
``QuantizeLinear`` that re-quantizes the deconv output (onnxruntime fuses the
conv with it into ``QLinearConv``) and its ``DequantizeLinear``.
"""

import math
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

from .onnx_graph import OnnxGraph


@dataclass
class SubpixelAxis:
    """The sub-pixel form of a deconvolution along one spatial axis.

    Attributes:
        taps (int): Conv kernel size ``T = ceil(K / s)``.
        pad_begin (int): Conv zero padding before the input.
        pad_end (int): Conv zero padding after the input.
        crop_begin (int): Elements cropped from the start of the
            ``DepthToSpace`` output.
        crop_end (int): Elements cropped from its end.
    """

    taps: int
    pad_begin: int
    pad_end: int
    crop_begin: int
    crop_end: int


def subpixel_axis(
    kernel: int, stride: int, pad_begin: int, pad_end: int, output_padding: int = 0
) -> Optional[SubpixelAxis]:
    """The sub-pixel form of a deconvolution along one axis (dilation 1).

    A deconv output ``n`` takes input ``m`` through tap ``k = n + p_b - s m``.
    The conv computes, at position ``q``, the block of outputs
    ``s q + r - c`` (``c = p_b mod s``) from inputs ``q - P .. q - P + T - 1``
    (``P = T - 1 - p_b // s``); the ``DepthToSpace`` output, cropped by ``c``
    at the start, is the deconv output.

    Args:
        kernel (int): Deconv kernel size ``K``.
        stride (int): Its stride ``s``.
        pad_begin (int): Its padding before (``p_b``).
        pad_end (int): Its padding after (``p_e``).
        output_padding (int): Its output padding. Defaults to 0.

    Returns:
        SubpixelAxis | None: None where the conv would need a negative
        padding (deconv padding beyond its kernel).
    """
    taps = math.ceil(kernel / stride)
    blocks_before, crop_begin = divmod(pad_begin, stride)
    pad = taps - 1 - blocks_before
    # deconv output length s * L + extra_out; the conv gives L + extra blocks
    extra_out = kernel + output_padding - pad_begin - pad_end - stride
    extra = -(-(extra_out + crop_begin) // stride)
    pad_after = extra - pad + taps - 1
    if pad < 0 or pad_after < 0:
        return None
    return SubpixelAxis(
        taps, pad, pad_after, crop_begin, stride * extra - crop_begin - extra_out
    )


def subpixel_weight(weight, stride: int, axes: List[SubpixelAxis], fill=0):
    """The conv kernel of the sub-pixel form of an ungrouped deconv.

    Args:
        weight (np.ndarray): Deconv weight ``(C_in, C_out, K_h, K_w)``.
        stride (int): The deconv's stride (both axes).
        axes (list[SubpixelAxis]): :func:`subpixel_axis` of height and width.
        fill (int | np.ndarray): Value of the taps no deconv weight maps to
            (the weight zero point; per output channel, ``(C_out,)``, or
            scalar). Defaults to 0.

    Returns:
        np.ndarray: ``(s * s * C_out, C_in, T_h, T_w)``, output channel
        ``(r_h * s + r_w) * C_out + c`` for phase ``(r_h, r_w)`` (the
        ``DepthToSpace`` ``DCR`` order), the dtype of ``weight``.
    """
    import numpy as np

    c_in, c_out, k_h, k_w = weight.shape
    t_h, t_w = axes[0].taps, axes[1].taps
    fill = np.broadcast_to(np.asarray(fill, weight.dtype).reshape(-1), (c_out,))
    out = np.empty((stride, stride, c_out, c_in, t_h, t_w), weight.dtype)
    out[...] = fill.reshape(1, 1, c_out, 1, 1, 1)
    flipped = weight.transpose(1, 0, 2, 3)  # (C_out, C_in, K_h, K_w)
    for r_h in range(stride):
        for t_h_ in range(t_h):
            k_h_ = r_h + stride * (t_h - 1 - t_h_)
            if k_h_ >= k_h:
                continue
            for r_w in range(stride):
                for t_w_ in range(t_w):
                    k_w_ = r_w + stride * (t_w - 1 - t_w_)
                    if k_w_ < k_w:
                        out[r_h, r_w, :, :, t_h_, t_w_] = flipped[:, :, k_h_, k_w_]
    return out.reshape(stride * stride * c_out, c_in, t_h, t_w)


def _attribute(node, name: str, default):
    from onnx import helper

    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _subpixel_form(g: OnnxGraph, node) -> Union[Tuple[int, list], str]:
    """``(stride, [height axis, width axis])`` of a quantized deconv, or why
    it has none."""
    wdq = g.producer(node.input[1])
    weight = g.value(wdq.input[0])
    if weight.ndim != 4:
        return f'{weight.ndim - 2}-d deconvolution (only 2-d has one)'
    if _attribute(node, 'group', 1) != 1:
        return 'grouped deconvolution'
    if g.value(wdq.input[1]).size > 1 and _attribute(wdq, 'axis', 1) % 4 != 1:
        return 'weight scales not per output channel'
    if any(d != 1 for d in _attribute(node, 'dilations', [1, 1])):
        return 'dilated deconvolution'
    if _attribute(node, 'output_shape', None) is not None or _attribute(
        node, 'auto_pad', b'NOTSET'
    ) not in (b'NOTSET', 'NOTSET'):
        return 'output_shape / auto_pad given'
    strides = list(_attribute(node, 'strides', [1, 1]))
    if strides[0] != strides[1]:
        return f'strides {strides} differ (DepthToSpace takes one block size)'
    kernel = weight.shape[2:]
    pads = list(_attribute(node, 'pads', [0, 0, 0, 0]))
    extra = list(_attribute(node, 'output_padding', [0, 0]))
    axes = [
        subpixel_axis(kernel[i], strides[0], pads[i], pads[i + 2], extra[i])
        for i in range(2)
    ]
    if None in axes:
        return f'padding {pads} beyond the kernel {list(kernel)}'
    return strides[0], axes


def _requantization(g: OnnxGraph, out: str):
    """The per-tensor ``QuantizeLinear`` that re-quantizes a deconv's output,
    after ``Relu`` ops it alone reads, else None."""
    outputs = {o.name for o in g.graph.output}
    tensor = out
    while True:
        readers = g.consumers(tensor)
        if tensor in outputs or len(readers) != 1:
            return None
        if readers[0].op_type != 'Relu':
            break
        tensor = readers[0].output[0]
    return readers[0] if g.per_tensor_q(readers[0], tensor) else None


def _tiled(g: OnnxGraph, name: str, times: int, stem: str) -> str:
    """A per-channel constant tiled ``times`` (a per-tensor one as it is)."""
    import numpy as np

    value = g.value(name)
    if value.size == 1:
        return name
    return g.add_init(np.tile(value.reshape(-1), times), stem)


def rewrite_deconvolution(g: OnnxGraph, node, after) -> None:
    """Replace a ``ConvTranspose`` on dequantized integer weights by its
    sub-pixel conv (the same values).

    Args:
        g (OnnxGraph): The graph (edited in place).
        node: The ``ConvTranspose`` node; its weight is a
            ``DequantizeLinear`` of an integer initializer.
        after: The node whose output the ``DepthToSpace`` / ``Slice`` take
            (the deconv output's ``QuantizeLinear``: the integer rewrite; the
            values only move, so any node the re-arranged channels pass
            through elementwise fits).

    The ``DepthToSpace`` / ``Slice`` nodes are appended to the graph: sort
    it (:meth:`OnnxGraph.topological_sort`) before running it.

    Raises:
        ValueError: The deconv has no sub-pixel form, or ``after`` does not
            follow it through single-reader ops (the message says which); the
            graph is then unchanged.
    """
    from onnx import helper

    form = _subpixel_form(g, node)
    if isinstance(form, str):
        raise ValueError(f'{node.name or node.output[0]}: no sub-pixel form: {form}')
    stride, axes = form
    changed, tensor = {after.output[0]}, node.output[0]
    while tensor != after.output[0]:  # the tensors from the conv to the blocks
        readers = g.consumers(tensor)
        if len(readers) != 1 or tensor in changed:
            raise ValueError(
                f'{node.name or node.output[0]}: {after.op_type} '
                f'{after.output[0]} does not follow it through single-reader ops'
            )
        changed.add(tensor)
        tensor = readers[0].output[0]
    phases = stride * stride
    stem = node.output[0] + '_subpixel'
    wdq = g.producer(node.input[1])
    zero = g.value(wdq.input[2]) if len(wdq.input) > 2 else 0
    weight = subpixel_weight(g.value(wdq.input[0]), stride, axes, zero)
    inputs = [g.add_init(weight, stem + '_w')] + [
        _tiled(g, n, phases, f'{stem}_w_{i}') for i, n in enumerate(wdq.input[1:])
    ]
    new_wdq = helper.make_node('DequantizeLinear', inputs, [stem + '_w_dq'], axis=0)
    conv_inputs = [node.input[0], new_wdq.output[0]]
    new, old = [new_wdq], [wdq]
    if len(node.input) > 2 and node.input[2]:
        bias_dq = g.producer(node.input[2])
        if bias_dq is not None and bias_dq.op_type == 'DequantizeLinear':
            old.append(bias_dq)
            tiled = [
                _tiled(g, n, phases, f'{stem}_b_{i}')
                for i, n in enumerate(bias_dq.input)
            ]
            new.append(
                helper.make_node('DequantizeLinear', tiled, [stem + '_b_dq'], axis=0)
            )
            conv_inputs.append(stem + '_b_dq')
        else:
            conv_inputs.append(_tiled(g, node.input[2], phases, stem + '_b'))
    new.append(
        helper.make_node(
            'Conv',
            conv_inputs,
            list(node.output),
            name=stem,
            kernel_shape=[a.taps for a in axes],
            pads=[a.pad_begin for a in axes] + [a.pad_end for a in axes],
        )
    )
    index = list(g.graph.node).index(node)
    g.graph.node.remove(node)
    for offset, added in enumerate(new):
        g.graph.node.insert(index + offset, added)
    for dq in old:  # the deconv's own weight / bias DQ, unless shared
        if not g.consumers(dq.output[0]):
            g.graph.node.remove(dq)
    # the shapes of the re-arranged tensors are left to shape inference
    for info in [v for v in g.graph.value_info if v.name in changed]:
        g.graph.value_info.remove(info)
    _move_blocks(g, after, stride, axes)


def _move_blocks(g: OnnxGraph, quantize, stride: int, axes: list) -> None:
    """``DepthToSpace`` and the border ``Slice`` on the 8-bit output of
    ``quantize``."""
    import numpy as np
    from onnx import helper

    out = quantize.output[0]
    blocks = out + '_blocks'
    quantize.output[0] = blocks
    steps = []
    if stride > 1:
        steps.append(('DepthToSpace', dict(blocksize=stride, mode='DCR')))
    if any(a.crop_begin or a.crop_end for a in axes):
        steps.append(('Slice', {}))
    tensor = blocks
    for i, (op, attrs) in enumerate(steps):
        result = out if i == len(steps) - 1 else f'{blocks}_{op}'
        inputs = [tensor]
        if op == 'Slice':
            ends = [-a.crop_end if a.crop_end else np.iinfo(np.int64).max for a in axes]
            inputs += [
                g.add_init(
                    np.array([a.crop_begin for a in axes], np.int64), blocks + '_start'
                ),
                g.add_init(np.array(ends, np.int64), blocks + '_end'),
                g.add_init(np.array([2, 3], np.int64), blocks + '_axes'),
            ]
        g.graph.node.append(helper.make_node(op, inputs, [result], **attrs))
        tensor = result


def integer_deconvolutions(g: OnnxGraph, layers: list) -> List[str]:
    """Rewrite each quantized ``ConvTranspose`` of ``layers`` whose output is
    re-quantized to 8 bits (after ``Relu`` ops it alone reads) into its
    sub-pixel conv; warn, naming each, about those left float.

    Args:
        g (OnnxGraph): The graph after BN folding, activation grids and int32
            biases (edited in place).
        layers (list): The quantized layers' nodes.

    Returns:
        list[str]: The names of the rewritten deconvolutions.
    """
    rewritten, kept = [], []
    for node in [n for n in layers if n.op_type == 'ConvTranspose']:
        name = node.name or node.output[0]
        form = _subpixel_form(g, node)
        quantize = _requantization(g, node.output[0])
        if isinstance(form, str):
            kept.append(f'{name} ({form})')
        elif quantize is None:
            kept.append(f'{name} (its output is not re-quantized to 8 bits)')
        else:
            rewrite_deconvolution(g, node, quantize)
            rewritten.append(name)
    if kept:
        warnings.warn(
            'optimize_for_onnxruntime: these quantized deconvolutions stay '
            'float ConvTranspose (onnxruntime has no integer deconvolution '
            'kernel; the sub-pixel integer conv needs an ungrouped, undilated '
            '2-d deconv with equal strides whose output is re-quantized): '
            + '; '.join(kept),
            stacklevel=3,
        )
    return rewritten
