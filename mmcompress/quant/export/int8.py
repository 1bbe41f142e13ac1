"""The integer-graph rewrite: make onnxruntime run an exported QDQ graph in
8-bit integer kernels (:func:`optimize_for_onnxruntime`).

The passes work on the quantized layers' ONNX ops of the registered handlers
(:mod:`mmcompress.quant.handlers`): BatchNorm folding for the layer types
that fold it (``folds_batchnorm``), 8-bit grids for the float tensors between
integer ops, int32 biases defined by :func:`~.storage.int32_bias` (the
definition the QAT model's ``integer_bias`` uses too).
"""

import warnings
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..handlers import onnx_layer_ops
from .int8_activations import (
    calibrated_ranges,
    float_islands,
    insert_activation_quantization,
    plan_activation_quantization,
)
from .int8_deconv import integer_deconvolutions
from .onnx_graph import OnnxGraph
from .storage import int32_bias, weight_peak


def _out_axis(conv) -> Optional[int]:
    """The output-channel axis of a conv's weight: 0 for ``Conv``, 1 for an
    ungrouped ``ConvTranspose`` (weights ``(in, out, kh, kw)``); None for a
    grouped ``ConvTranspose`` (its output channels span the groups)."""
    if conv.op_type != 'ConvTranspose':
        return 0
    groups = next((a.i for a in conv.attribute if a.name == 'group'), 1)
    return 1 if groups == 1 else None


def _fold_batchnorm(g: OnnxGraph, convs: list) -> None:
    """Fold a BatchNormalization that follows a quantized conv or an
    ungrouped deconv into it (per-output-channel weight scales)."""
    import numpy as np
    from onnx import helper, numpy_helper

    for conv in convs:
        users = g.consumers(conv.output[0])
        axis = _out_axis(conv)
        if len(users) != 1 or users[0].op_type != 'BatchNormalization' or axis is None:
            continue
        bn = users[0]
        g.own_weight_dq(conv)  # the fold changes the weights of this conv only
        gamma, beta, mean, var = (g.value(n) for n in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == 'epsilon'), 1e-5)
        factor = gamma / np.sqrt(var + eps)
        _, wdq = g.quantized_layer_parts(conv)
        stored = numpy_helper.to_array(g.inits[wdq.input[0]])
        weight = stored.astype(np.int32)
        out_ch = weight.shape[axis]
        scale = np.broadcast_to(g.value(wdq.input[1]).reshape(-1), (out_ch,)).astype(
            np.float32
        )
        shape = [1] * weight.ndim
        shape[axis] = -1
        sign = np.where(factor < 0, -1, 1).reshape(shape)
        info = np.iinfo(stored.dtype)
        weight = np.clip(weight * sign, info.min, info.max).astype(info.dtype)
        bias = (
            g.value(conv.input[2])
            if len(conv.input) > 2
            else np.zeros(out_ch, np.float32)
        )
        new_bias = ((bias - mean) * factor + beta).astype(np.float32)
        stem = conv.output[0]
        wdq.input[0] = g.add_init(weight, stem + '_w_folded')
        wdq.input[1] = g.add_init(
            (scale * np.abs(factor)).astype(np.float32), stem + '_w_scale_folded'
        )
        wdq.input[2] = g.add_init(np.zeros(out_ch, info.dtype), stem + '_w_zp')
        del wdq.attribute[:]
        wdq.attribute.append(helper.make_attribute('axis', axis))
        bias_name = g.add_init(new_bias, stem + '_bias_folded')
        if len(conv.input) > 2:
            conv.input[2] = bias_name
        else:
            conv.input.append(bias_name)
        for node in g.consumers(bn.output[0]):
            g.replace_input(node, bn.output[0], conv.output[0])
        for out in g.graph.output:
            if out.name == bn.output[0]:
                out.name = conv.output[0]
        g.graph.node.remove(bn)


def _refine_weight_grid(g: OnnxGraph, wdq, rounded) -> None:
    """Multiply each output channel's int8 weights by the integer factor
    ``k`` of :func:`~.storage.int32_bias` and divide its
    scale by ``k`` (the weight values stay; the accumulator grid gets finer).

    Args:
        g (OnnxGraph): The graph.
        wdq: The weight ``DequantizeLinear`` node (edited in place).
        rounded (IntegerBias): The result of ``int32_bias``.
    """
    import numpy as np
    from onnx import numpy_helper

    if bool((rounded.factor == 1).all()):
        return
    stored = numpy_helper.to_array(g.inits[wdq.input[0]])
    scale = g.value(wdq.input[1])
    shape = [1] * stored.ndim
    if scale.size > 1:
        axis = next((a.i for a in wdq.attribute if a.name == 'axis'), 1)
        shape[axis % stored.ndim] = -1
    weight = (stored.astype(np.int64) * rounded.factor.numpy().reshape(shape)).astype(
        np.int8
    )
    wdq.input[0] = g.add_init(weight, wdq.input[0] + '_refined')
    wdq.input[1] = g.add_init(
        rounded.weight_scale.numpy().reshape(scale.shape), wdq.input[1] + '_refined'
    )


def _unsigned_activations(g: OnnxGraph) -> None:
    """Store signed 8-bit activation grids as uint8, the zero point moved up
    by 128 (the same values: ``(q - z) * s`` for ``q`` in ``[-128, 127]``
    equals ``(q + 128 - (z + 128)) * s``): onnxruntime's CPU kernels fuse
    ``QLinearConv`` / ``QLinearAdd`` on uint8 activations only (a conv on an
    int8 input, e.g. an FPN output conv reading a signed sum, would run in
    float)."""
    import numpy as np

    for q in [n for n in g.graph.node if n.op_type == 'QuantizeLinear']:
        if g.is_constant(q.input[0]) or len(q.input) < 3:
            continue
        zero = g.value(q.input[2])
        if zero is None or zero.dtype != np.int8:
            continue
        name = g.add_init(
            (zero.astype(np.int16) + 128).astype(np.uint8), q.output[0] + '_zp_u8'
        )
        q.input[2] = name
        for dq in g.consumers(q.output[0]):
            if dq.op_type == 'DequantizeLinear':
                dq.input[2] = name


def _stored_weight_peak(g: OnnxGraph, wdq):
    """Largest ``|w|`` per weight-scale entry of int8 weights with zero
    point 0 (refinable by an integer factor), else None."""
    import numpy as np
    from onnx import numpy_helper

    stored = numpy_helper.to_array(g.inits[wdq.input[0]])
    scale = g.value(wdq.input[1])
    zero = g.value(wdq.input[2]) if len(wdq.input) > 2 else None
    if stored.dtype != np.int8 or scale is None or zero is None or np.any(zero != 0):
        return None
    axis = None
    if scale.size > 1:
        axis = next((a.i for a in wdq.attribute if a.name == 'axis'), 1)
    return weight_peak(torch.from_numpy(stored.astype(np.int64)), axis)


def _quantize_bias(g: OnnxGraph, layers: list) -> None:
    """int32 bias for quantized Conv / ConvTranspose / Gemm, with the weight
    grid refinement, both from
    :func:`~.storage.int32_bias` (the definition the
    QAT model's ``integer_bias`` uses too)."""
    from onnx import helper

    refined = {}  # weight DQ output -> (x scale, bias, rounded) of its refinement
    for layer in layers:
        if len(layer.input) < 3 or g.value(layer.input[2]) is None:
            continue
        xdq, wdq = g.quantized_layer_parts(layer)
        x_scale, w_scale = g.value(xdq.input[1]), g.value(wdq.input[1])
        bias = g.value(layer.input[2])
        if (
            x_scale is None
            or w_scale is None
            or x_scale.size != 1
            or w_scale.size not in (1, bias.size)
        ):
            continue
        done = refined.get(wdq.output[0])
        if done is not None and float(x_scale) == done[0] and (bias == done[1]).all():
            rounded = done[2]  # a shared layer (a head applied to every level)
        else:
            if done is not None:  # shared weights, another bias grid: own copy
                wdq = g.own_weight_dq(layer, done[3])
            original = (wdq.input[0], wdq.input[1])
            rounded = int32_bias(
                torch.tensor(bias.reshape(-1)),
                float(x_scale),
                torch.tensor(w_scale),
                _stored_weight_peak(g, wdq),
            )
            _refine_weight_grid(g, wdq, rounded)
            refined[wdq.output[0]] = (float(x_scale), bias, rounded, original)
        stem = layer.output[0] + '_bias'
        q_name = g.add_init(rounded.value.numpy().reshape(bias.shape), stem + '_int32')
        s_name = g.add_init(rounded.scale.numpy().reshape(bias.shape), stem + '_scale')
        z_name = g.add_init(rounded.value.numpy().reshape(bias.shape) * 0, stem + '_zp')
        dq = helper.make_node(
            'DequantizeLinear', [q_name, s_name, z_name], [stem + '_dq'], axis=0
        )
        g.graph.node.insert(list(g.graph.node).index(layer), dq)
        layer.input[2] = stem + '_dq'


def _warn_float_islands(g: OnnxGraph) -> None:
    """Warn, naming the op types, about ops left in float between integer ops
    (:func:`~.int8_activations.float_islands`)."""
    islands = float_islands(g)
    if islands:
        listed = '; '.join(
            f'{op} x{len(names)} ({", ".join(names[:3])}'
            f'{", ..." if len(names) > 3 else ""})'
            for op, names in sorted(islands.items())
        )
        warnings.warn(
            'optimize_for_onnxruntime: the integer rewrite has no 8-bit form '
            f'for these ops, onnxruntime runs them in float between integer '
            f'ops (float islands, correct but slower): {listed}',
            stacklevel=3,
        )


def optimize_for_onnxruntime(
    onnx_bytes: bytes, calibration: Sequence[Tensor], integer_deconv: bool = True
) -> bytes:
    """Rewrite an exported QDQ graph so onnxruntime runs it in 8-bit integers.

    onnxruntime fuses ``DQ(x) -> Conv(DQ(w), DQ(bias)) -> Q(y)`` into an integer
    ``QLinearConv`` and ``DQ -> Add / pooling -> Q`` into ``QLinearAdd`` /
    ``QLinearGlobalAveragePool`` / integer max-pooling; an op whose inputs or
    output are not quantized runs in float (with layout conversions around it).
    The QAT model quantizes only the *inputs* of its quantized layers, so this
    pass, on the exported graph:

    1. folds a ``BatchNormalization`` that follows a quantized conv into the
       conv's per-channel weight scales and bias (exact: a per-channel affine map
       keeps the weights on a per-channel grid; a negative BN factor flips the
       channel's integer weights, -128 saturating to 127);
    2. gives every float tensor of the integer region an 8-bit ``Q -> DQ``: the
       outputs of quantized convs / linears, and of ``Add``, ``Relu`` and
       pooling / reshaping ops (:data:`~.int8_activations.INTEGER_OPS`) whose
       inputs are all integer (a tensor read by a QAT activation quantizer
       counts as integer). The grid is, in this order of preference:

       * the QAT model's own 8-bit activation quantizer that reads the tensor
         (e.g. the next block's conv, for a residual ``Add`` + ``Relu`` output
         or the identity branch); when several per-tensor quantizers read it
         (a stage's first conv and its downsample conv) all share the widest
         of them. Quantizers that do more than ``QuantizeLinear`` (narrowed
         4-bit clip, offset / multiplier) keep reading the float tensor;
       * for the input of a value-preserving op (:data:`VALUE_PRESERVING_OPS`),
         the grid of its output (exact: max-pooling and reshaping commute with
         quantization);
       * otherwise 8-bit uint8 min/max ranges measured on ``calibration``
         (e.g. a conv feeding a residual ``Add``, the last block's output
         before global pooling).

       A tensor read only by a ``Relu`` whose output is quantized gets no grid
       of its own (onnxruntime fuses the ``Relu`` into the quantization). Each
       re-quantization is a rounding the QAT model does not have; its effect
       is measured by the agreement check. A model trained with
       ``output_quantizers`` (:mod:`mmcompress.quant.transform`) already holds
       a ``QuantizeLinear`` with its trained grid on each of these tensors,
       so they count as read by a QAT quantizer and nothing is re-rounded;
    3. stores signed activation grids as uint8 (zero point + 128, the same
       values), which onnxruntime's integer CPU kernels need;
    4. quantizes the float bias of quantized convs / linears to int32 with
       scale ``s_x * s_w`` (as onnxruntime's own quantizer), after refining
       each output channel's weight grid by an integer factor that brings the
       bias closest to it (both defined by
       :func:`~.storage.int32_bias`; a QAT model built
       with ``integer_bias`` already adds the BN shifts on this grid);
    5. rewrites each quantized ``ConvTranspose`` whose output is re-quantized
       (onnxruntime's CPU provider has no integer deconvolution kernel) into
       its sub-pixel form: an integer ``Conv`` with ``s * s`` times the output
       channels, then ``DepthToSpace`` and a border ``Slice`` on its 8-bit
       output (:mod:`.int8_deconv`; the same values). A deconv it cannot
       rewrite stays float, with a warning naming it.

    Args:
        onnx_bytes (bytes): A model from :func:`export_onnx`.
        calibration (Sequence[Tensor]): Input batches for the calibrated
            ranges.
        integer_deconv (bool): Step 5. False keeps every deconv a float
            ``ConvTranspose`` (onnxruntime runs it on dequantized inputs).
            Defaults to True.

    Returns:
        bytes: The rewritten model.
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    g = OnnxGraph(model)
    layers = [n for n in g.graph.node if g.quantized_layer_parts(n) is not None]
    folding = onnx_layer_ops(batchnorm_folding=True)
    _fold_batchnorm(g, [n for n in layers if n.op_type in folding])
    plans = plan_activation_quantization(g, layers)
    ranges = {}
    to_calibrate = [t for t, (kind, _) in plans.items() if kind == 'calibrate']
    if to_calibrate:
        ranges = calibrated_ranges(model, to_calibrate, calibration)
    insert_activation_quantization(g, plans, ranges)
    _unsigned_activations(g)
    _quantize_bias(g, layers)
    if integer_deconv:
        integer_deconvolutions(g, layers)
    _warn_float_islands(g)
    g.topological_sort()
    g.remove_unused_initializers()
    onnx.checker.check_model(model)
    return model.SerializeToString()
