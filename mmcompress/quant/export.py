"""Export a quantization-aware-trained model to ONNX with QuantizeLinear /
DequantizeLinear (QDQ) nodes, runnable by onnxruntime's integer kernels.

Each :class:`~mmcompress.quant.layers.QuantConv2d` / ``QuantConvTranspose2d`` /
``QuantLinear`` becomes an :class:`ExportQuantConv2d` /
``ExportQuantConvTranspose2d`` / ``ExportQuantLinear`` computing exactly what the
trained layer computes in eval mode, written with ops that the ONNX exporter maps
to QDQ:

* the input quantizer's :class:`~mmcompress.quant.quantizers.AffineQParams`
  (optional ``(x - offset) * multiplier``, then a clip to the quantizer's own
  integer range, then ``QuantizeLinear -> DequantizeLinear`` in uint8 / int8);
  a grid narrower than 8 bits (e.g. 4-bit ``[0, 15]``) is expressed by that clip
  before the 8-bit ``QuantizeLinear`` (ONNX's 8-bit types carry the values
  exactly; onnxruntime runs them with its int8 kernels);
* the weight as an int8 initializer with per-tensor or per-output-channel
  scales (axis 0; axis 1 for ``ConvTranspose``; the layer's ``output_scale``
  folded in) feeding ``DequantizeLinear``; the
  integer values are checked to reproduce the fake-quantized weight;
* float bias, float layers (e.g. the first conv) left as they are.

Limits (clear errors): quantizers that are not affine (N2UQ's learned
thresholds) cannot be written as QDQ; weight grids that need more than int8
(EWGS / DAQ / N2UQ 8-bit weights use the 2^8 odd levels ``-255..255``) cannot
either; gradient quantizers are training-only and dropped.
"""
import copy
import io
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .integer_bias import (INT8, UINT8, bake_integer_bias, channel_view,
                           int32_bias, integer_bias_enabled, integer_weight,
                           storage_range, weight_peak)
from .layers import (QuantConv2d, QuantConvTranspose2d, QuantLayerMixin,
                     QuantLinear, attach_output_quantizer)
from .quantizers.base import AffineQParams, BaseQuantizer

class ExportActQuant(nn.Module):
    """An input quantizer as clip + ``fake_quantize`` (exported as Q/DQ).

    Args:
        params (AffineQParams): The quantizer's affine form.
        what (str): Layer name for error messages.
        unsigned_storage (bool): Store a signed 8-bit grid as uint8 with the
            zero point moved up by 128 (the same values: ``(q - z) * s`` for
            ``q`` in ``[-128, 127]`` equals ``(q + 128 - (z + 128)) * s``).
            onnxruntime fuses ``QLinearAdd`` only when both operands and the
            sum share one integer type, so output quantizers (BN outputs
            feeding a residual ``Add`` next to an unsigned post-``ReLU``
            identity) use it. Defaults to False.
    """

    def __init__(self, params: AffineQParams, what: str,
                 unsigned_storage: bool = False) -> None:
        super().__init__()
        self.storage = storage_range(params.qmin, params.qmax, what)
        self.axis = params.axis
        scale = params.scale.detach().float().reshape(-1)
        zero_point = params.zero_point.detach().round().reshape(-1)
        qmin, qmax = params.qmin, params.qmax
        if unsigned_storage and self.storage == INT8:
            shift = UINT8[0] - INT8[0]
            zero_point, qmin, qmax = zero_point + shift, qmin + shift, qmax + shift
            self.storage = UINT8
        self.per_tensor = (float(scale[0]), int(zero_point[0])) \
            if self.axis is None or scale.numel() == 1 else None
        self.register_buffer('scale', scale)
        self.register_buffer('zero_point', zero_point.to(torch.int32))
        self.register_buffer('low', (qmin - zero_point) * scale)
        self.register_buffer('high', (qmax - zero_point) * scale)
        self.narrowed = (qmin, qmax) != self.storage
        self.register_buffer(
            'offset', None if params.offset is None else
            params.offset.detach().float().reshape(-1))
        self.register_buffer(
            'multiplier', None if params.multiplier is None else
            params.multiplier.detach().float().reshape(-1))

    def _view(self, value: Tensor, x: Tensor) -> Tensor:
        if self.per_tensor is not None:
            return value.reshape([1] * x.dim())
        shape = [1] * x.dim()
        shape[self.axis % x.dim()] = -1
        return value.reshape(shape)

    def forward(self, x: Tensor) -> Tensor:
        if self.offset is not None:
            x = (x - self._view(self.offset, x)) * self._view(self.multiplier, x)
        if self.narrowed:
            x = torch.clamp(x, self._view(self.low, x), self._view(self.high, x))
        if self.per_tensor is not None:
            return torch.fake_quantize_per_tensor_affine(
                x, *self.per_tensor, *self.storage)
        return torch.fake_quantize_per_channel_affine(
            x, self.scale, self.zero_point, self.axis % x.dim(), *self.storage)


class _ExportLayerMixin:

    def _setup(self, layer: QuantLayerMixin, what: str) -> None:
        self.act = None
        if layer.act_quantizer is not None:
            self.act = ExportActQuant(layer.act_quantizer.export_qparams(), what)
        self.quantized_weight = layer.weight_quantizer is not None
        if not self.quantized_weight:
            weight = layer.weight.detach().clone()
            if layer.output_scale is not None:
                weight = weight * layer.output_scale.detach().abs()
            self.register_buffer('weight', weight)
        else:
            integer, scale, storage, axis = integer_weight(layer, what)
            self.register_buffer(
                'weight', integer * channel_view(scale, integer.dim(), axis))
            self.register_buffer('w_scale', scale)
            self.register_buffer(
                'w_zero_point', torch.zeros_like(scale, dtype=torch.int32))
            self.w_storage = storage
            self.w_axis = axis
            self.w_per_tensor = float(scale[0]) if axis is None else None
        self.register_buffer(
            'bias', None if layer.bias is None else layer.bias.detach().clone())

    def _weight(self) -> Tensor:
        if not self.quantized_weight:
            return self.weight
        if self.w_per_tensor is not None:
            return torch.fake_quantize_per_tensor_affine(
                self.weight, self.w_per_tensor, 0, *self.w_storage)
        return torch.fake_quantize_per_channel_affine(
            self.weight, self.w_scale, self.w_zero_point, self.w_axis,
            *self.w_storage)

    def _input(self, x: Tensor) -> Tensor:
        return x if self.act is None else self.act(x)


class ExportQuantConv2d(_ExportLayerMixin, nn.Module):
    """Export form of :class:`QuantConv2d`.

    Args:
        layer (QuantConv2d): The trained layer.
        what (str): Its name, for error messages.
    """

    def __init__(self, layer: QuantConv2d, what: str) -> None:
        super().__init__()
        self._setup(layer, what)
        self.conv_args = (layer.stride, layer.padding, layer.dilation,
                          layer.groups)
        if layer.padding_mode != 'zeros':
            raise ValueError(f'{what}: padding_mode={layer.padding_mode!r} is '
                             "not supported by the export (only 'zeros')")

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self._input(x), self._weight(), self.bias,
                        *self.conv_args)


class ExportQuantConvTranspose2d(_ExportLayerMixin, nn.Module):
    """Export form of :class:`QuantConvTranspose2d` (ONNX ``ConvTranspose``
    with a per-output-channel weight ``DequantizeLinear`` on axis 1).

    Args:
        layer (QuantConvTranspose2d): The trained layer.
        what (str): Its name, for error messages.
    """

    def __init__(self, layer: QuantConvTranspose2d, what: str) -> None:
        super().__init__()
        self._setup(layer, what)
        self.conv_args = (layer.stride, layer.padding, layer.output_padding,
                          layer.groups, layer.dilation)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(self._input(x), self._weight(), self.bias,
                                  *self.conv_args)


class ExportQuantLinear(_ExportLayerMixin, nn.Module):
    """Export form of :class:`QuantLinear`.

    Args:
        layer (QuantLinear): The trained layer.
        what (str): Its name, for error messages.
    """

    def __init__(self, layer: QuantLinear, what: str) -> None:
        super().__init__()
        self._setup(layer, what)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._input(x), self._weight(), self.bias)


def _check_initialized(quantizer: Optional[nn.Module], name: str) -> None:
    if quantizer is not None and quantizer.requires_init and \
            not quantizer.initialized.item():
        raise ValueError(
            f'{name}: quantizer {type(quantizer).__name__} was never '
            'initialized (run a batch or load a QAT checkpoint first)')


def convert_for_export(model: nn.Module,
                       example_input: Optional[Tensor] = None) -> nn.Module:
    """A copy of ``model`` (eval mode) with quantized layers in export form.

    Output quantizers (``output_quantizer`` children attached by
    :func:`~mmcompress.quant.layers.attach_output_quantizer`) become
    :class:`ExportActQuant` with uint8 storage: a ``QuantizeLinear ->
    DequantizeLinear`` on the module output. With ``integer_bias``
    (:mod:`mmcompress.quant.integer_bias`) the rounded BN shifts are written
    into the copy's BatchNorms (:func:`bake_integer_bias`).

    Args:
        model (nn.Module): A trained model holding QuantConv2d /
            QuantConvTranspose2d / QuantLinear layers.
        example_input (Tensor, optional): Run once through the copy (no
            gradient, eval mode) before converting: ``integer_bias`` pairs
            BNs with convs on a forward pass. Needed only when the model
            has ``integer_bias`` and ran no forward pass since it was built.

    Returns:
        nn.Module: The converted copy; its outputs equal ``model.eval()``'s.
    """
    model = copy.deepcopy(model).eval()
    if integer_bias_enabled(model):
        if example_input is not None:
            with torch.no_grad():
                model(example_input)
        bake_integer_bias(model)
    export_types = {QuantConv2d: ExportQuantConv2d,
                    QuantConvTranspose2d: ExportQuantConvTranspose2d,
                    QuantLinear: ExportQuantLinear}
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, tuple(export_types))]
    if not targets:
        raise ValueError(f'{type(model).__name__} holds no QuantConv2d / '
                         'QuantConvTranspose2d / QuantLinear layer; nothing to '
                         'export as QDQ')
    outputs = [(name, module) for name, module in model.named_modules()
               if isinstance(getattr(module, 'output_quantizer', None),
                             BaseQuantizer)]
    for name, module in outputs:
        what = f'{name}.output_quantizer' if name else 'output_quantizer'
        _check_initialized(module.output_quantizer, what)
        module.output_quantizer = ExportActQuant(
            module.output_quantizer.export_qparams(), what,
            unsigned_storage=True)
    for name, module in targets:
        for quantizer in (module.weight_quantizer, module.act_quantizer):
            _check_initialized(quantizer, name)
        try:
            new = next(cls for base, cls in export_types.items()
                       if isinstance(module, base))(module, name)
        except TypeError as error:
            raise TypeError(f'{name}: {error}') from error
        if hasattr(module, 'output_quantizer'):
            attach_output_quantizer(new, module.output_quantizer, name)
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


def _fold_weight_quantize_nodes(onnx_model) -> int:
    """Replace ``QuantizeLinear(constant)`` by an integer initializer."""
    import numpy as np
    from onnx import numpy_helper

    graph = onnx_model.graph
    inits = {init.name: init for init in graph.initializer}
    constants, aliases = {}, {}
    for node in graph.node:
        if node.op_type == 'Constant':
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == 'Identity':
            aliases[node.output[0]] = node.input[0]

    def value(name):
        name = aliases.get(name, name)
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return constants.get(name)

    folded, removed = 0, []
    for node in graph.node:
        if node.op_type != 'QuantizeLinear':
            continue
        data, scale = value(node.input[0]), value(node.input[1])
        zero = value(node.input[2]) if len(node.input) > 2 else None
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
        integer = np.clip(np.rint(data / scale_v) + zero_v.astype(np.int64),
                          info.min, info.max).astype(zero.dtype)
        new = numpy_helper.from_array(integer, node.output[0] + '_int')
        graph.initializer.append(new)
        for other in graph.node:
            for i, name in enumerate(other.input):
                if name == node.output[0]:
                    other.input[i] = new.name
        removed.append(node)
        folded += 1
    for node in removed:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    used |= {out.name for out in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return folded


def export_onnx(model: nn.Module,
                example_input: Tensor,
                path: Optional[str] = None,
                opset_version: int = 17,
                input_names: Sequence[str] = ('input', ),
                output_names: Sequence[str] = ('output', ),
                dynamic_batch: bool = True):
    """Export a QAT model to ONNX QDQ.

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

    Returns:
        bytes: The serialized ONNX model.
    """
    import onnx

    converted = convert_for_export(model, example_input)
    buffer = io.BytesIO()
    axes = {n: {0: 'batch'} for n in (*input_names, *output_names)} \
        if dynamic_batch else None
    torch.onnx.export(
        converted, (example_input, ), buffer, dynamo=False,
        opset_version=opset_version, input_names=list(input_names),
        output_names=list(output_names), dynamic_axes=axes,
        do_constant_folding=True)
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


def onnxruntime_session(onnx_model: bytes, threads: int = 1):
    """An onnxruntime CPU session with all graph optimizations.

    Args:
        onnx_model (bytes): Serialized model.
        threads (int): Intra-op threads. Defaults to 1.

    Returns:
        onnxruntime.InferenceSession: The session.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        onnx_model, options, providers=['CPUExecutionProvider'])


def compare_with_onnxruntime(model: nn.Module, session,
                             batches: Sequence[Tensor]) -> dict:
    """Top-1 agreement and output error between PyTorch and onnxruntime.

    Args:
        model (nn.Module): The PyTorch model (one tensor in, logits out).
        session: An onnxruntime session of its export.
        batches (Sequence[Tensor]): Input batches.

    Returns:
        dict: ``top1_agreement`` (fraction), ``max_abs_diff``, ``num_samples``.
    """
    model = model.eval()
    name = session.get_inputs()[0].name
    agree, total, max_diff = 0, 0, 0.0
    with torch.no_grad():
        for batch in batches:
            reference = model(batch)
            if isinstance(reference, (tuple, list)):
                reference = reference[0]
            result = torch.from_numpy(
                session.run(None, {name: batch.numpy()})[0])
            agree += int((reference.argmax(-1) == result.argmax(-1)).sum())
            total += batch.shape[0]
            max_diff = max(max_diff, float((reference - result).abs().max()))
    return dict(top1_agreement=agree / max(total, 1), max_abs_diff=max_diff,
                num_samples=total)


#: Ops onnxruntime runs on 8-bit tensors when their inputs come from
#: ``DequantizeLinear`` and their output goes to one ``QuantizeLinear``.
INTEGER_OPS = ('Add', 'Relu', 'MaxPool', 'AveragePool', 'GlobalAveragePool',
               'Reshape', 'Flatten')
#: Of those, the ops whose outputs are input values (a selection or a new
#: shape): quantization commutes with them exactly.
VALUE_PRESERVING_OPS = ('MaxPool', 'Reshape', 'Flatten')
#: Elementwise ops an exported activation quantizer may apply before its
#: ``QuantizeLinear`` (offset / multiplier, clip to a narrowed grid).
QUANTIZER_PREFIX_OPS = ('Sub', 'Mul', 'Clip', 'Max', 'Min')


class _OnnxGraph:
    """Lookups and edits on an ONNX graph used by the onnxruntime rewrite.

    Args:
        model (onnx.ModelProto): The model (edited in place).
    """

    def __init__(self, model) -> None:
        from onnx import numpy_helper
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.constants = {
            n.output[0]: numpy_helper.to_array(n.attribute[0].t)
            for n in self.graph.node
            if n.op_type == 'Constant' and n.attribute[0].name == 'value'
        }
        self.aliases = {n.output[0]: n.input[0] for n in self.graph.node
                        if n.op_type == 'Identity'}

    def is_constant(self, name: str) -> bool:
        """Whether a tensor is an initializer or a ``Constant`` output."""
        name = self.aliases.get(name, name)
        return name in self.inits or name in self.constants

    def value(self, name: str):
        """The constant array behind a tensor name, or None."""
        from onnx import numpy_helper
        name = self.aliases.get(name, name)
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        return self.constants.get(name)

    def add_init(self, array, name: str) -> str:
        """Add an initializer; returns its name."""
        from onnx import numpy_helper
        tensor = numpy_helper.from_array(array, name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def producer(self, name: str):
        return next((n for n in self.graph.node if name in n.output), None)

    def consumers(self, name: str) -> list:
        return [n for n in self.graph.node if name in n.input]

    @staticmethod
    def replace_input(node, old: str, new: str) -> None:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new

    def is_activation_dq(self, node) -> bool:
        """A ``DequantizeLinear`` of a computed (not constant) tensor."""
        return node is not None and node.op_type == 'DequantizeLinear' and \
            not self.is_constant(node.input[0])

    def quantized_layer_parts(self, node):
        """``(input DQ, weight DQ)`` of a Conv / ConvTranspose / Gemm on
        dequantized integer input and weight, else None."""
        if node.op_type not in ('Conv', 'ConvTranspose', 'Gemm') or \
                len(node.input) < 2:
            return None
        xdq, wdq = self.producer(node.input[0]), self.producer(node.input[1])
        if not self.is_activation_dq(xdq) or wdq is None or \
                wdq.op_type != 'DequantizeLinear' or wdq.input[0] not in self.inits:
            return None
        return xdq, wdq

    def quantizer_chain(self, node):
        """The ops of an exported activation quantizer that starts at ``node``
        and does more than ``QuantizeLinear`` (offset, multiplier or narrowed
        clip): ``(prefix op types, QuantizeLinear node)``, else None."""
        ops = []
        while node is not None and node.op_type in QUANTIZER_PREFIX_OPS:
            ops.append(node.op_type)
            users = self.consumers(node.output[0])
            node = users[0] if len(users) == 1 else None
        if not ops or node is None or node.op_type != 'QuantizeLinear':
            return None
        return ops, node

    def per_tensor_q(self, node, tensor: Optional[str] = None) -> bool:
        """A ``QuantizeLinear`` (of ``tensor`` if given) with a constant
        per-tensor scale and zero point."""
        if node.op_type != 'QuantizeLinear' or len(node.input) < 3 or \
                tensor is not None and node.input[0] != tensor:
            return False
        scale = self.value(node.input[1])
        return scale is not None and scale.size == 1 and \
            self.value(node.input[2]) is not None

    def clip_only_grid(self, node):
        """For a narrowed quantizer ``clip -> QuantizeLinear`` starting at
        ``node``: its per-tensor ``QuantizeLinear`` (an 8-bit quantization with
        the same scale and zero point, then the clip and this quantizer, equals
        the quantizer itself: the clip bounds are grid points), else None."""
        chain = self.quantizer_chain(node)
        if chain is None or not set(chain[0]) <= {'Clip', 'Max', 'Min'} or \
                not self.per_tensor_q(chain[1]):
            return None
        return chain[1]

    def topological_sort(self) -> None:
        """Reorder the nodes so every tensor is produced before it is read."""
        available = {i.name for i in self.graph.input} | set(self.inits)
        pending, ordered = list(self.graph.node), []
        while pending:
            ready = [n for n in pending
                     if all(not i or i in available for i in n.input)]
            if not ready:
                raise ValueError('optimize_for_onnxruntime produced a cyclic '
                                 'graph')
            for node in ready:
                available.update(node.output)
                ordered.append(node)
            pending = [n for n in pending if all(n is not r for r in ready)]
        del self.graph.node[:]
        self.graph.node.extend(ordered)


def _fold_batchnorm(g: _OnnxGraph, convs: list) -> None:
    """Fold a BatchNormalization that follows a quantized conv into it."""
    import numpy as np
    from onnx import helper, numpy_helper

    for conv in convs:
        users = g.consumers(conv.output[0])
        if len(users) != 1 or users[0].op_type != 'BatchNormalization':
            continue
        bn = users[0]
        gamma, beta, mean, var = (g.value(n) for n in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == 'epsilon'), 1e-5)
        factor = gamma / np.sqrt(var + eps)
        _, wdq = g.quantized_layer_parts(conv)
        stored = numpy_helper.to_array(g.inits[wdq.input[0]])
        weight = stored.astype(np.int32)
        out_ch = weight.shape[0]
        scale = np.broadcast_to(g.value(wdq.input[1]).reshape(-1),
                                (out_ch, )).astype(np.float32)
        sign = np.where(factor < 0, -1, 1).reshape([-1] + [1] * (weight.ndim - 1))
        info = np.iinfo(stored.dtype)
        weight = np.clip(weight * sign, info.min, info.max).astype(info.dtype)
        bias = g.value(conv.input[2]) if len(conv.input) > 2 else \
            np.zeros(out_ch, np.float32)
        new_bias = ((bias - mean) * factor + beta).astype(np.float32)
        stem = conv.output[0]
        wdq.input[0] = g.add_init(weight, stem + '_w_folded')
        wdq.input[1] = g.add_init((scale * np.abs(factor)).astype(np.float32),
                                  stem + '_w_scale_folded')
        wdq.input[2] = g.add_init(np.zeros(out_ch, info.dtype), stem + '_w_zp')
        del wdq.attribute[:]
        wdq.attribute.append(helper.make_attribute('axis', 0))
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


def _plan_activation_quantization(g: _OnnxGraph, layers: list) -> dict:
    """Decide which float tensors get an 8-bit ``Q -> DQ`` and with what grid.

    Returns:
        dict: tensor -> ``(kind, ref)``: ``('reuse', Q)``, the QAT quantizer
        ``Q`` that reads the tensor (the widest if several); ``('grid_of', Q)``,
        a new 8-bit quantization with the scale and zero point of the narrowed
        QAT quantizer ``Q`` (clip first) that alone reads it; ``('same',
        tensor)``, the grid of the output of the value-preserving op that reads
        it; ``('calibrate', None)``. Tensors left out need nothing.
    """
    import numpy as np

    layer_outputs = {n.output[0] for n in layers}
    integer = set()
    for node in g.graph.node:
        if not node.output:
            continue
        out = node.output[0]
        if g.is_constant(out):
            continue
        if out in layer_outputs or g.is_activation_dq(node) or \
                any(g.per_tensor_q(r, out) for r in g.consumers(out)):
            integer.add(out)
        elif node.op_type in INTEGER_OPS:
            inputs = node.input[:1] if node.op_type == 'Reshape' else node.input
            if all(i in integer for i in inputs):
                integer.add(out)

    def width(q):
        info = np.iinfo(g.value(q.input[2]).dtype)
        return (info.max - info.min) * float(g.value(q.input[1]).reshape(-1)[0])

    plans, quantized = {}, set()
    for node in reversed(list(g.graph.node)):
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear') or \
                not node.output or node.output[0] not in integer:
            continue
        tensor = node.output[0]
        readers = [r for r in g.consumers(tensor) if r.op_type != 'Shape']
        direct = [r for r in readers if g.per_tensor_q(r, tensor)]
        entries = [r for r in readers
                   if r not in direct and g.quantizer_chain(r) is not None]
        others = [r for r in readers if r not in direct and r not in entries]
        if not others and len(direct) == 1:
            quantized.add(tensor)
        elif not others and not direct:
            donor = g.clip_only_grid(entries[0]) if len(entries) == 1 else None
            if donor is not None:
                plans[tensor] = ('grid_of', donor)
        elif len(others) == 1 and not direct and others[0].op_type == 'Relu':
            if others[0].output[0] not in quantized:
                plans[tensor] = ('calibrate', None)
            # else onnxruntime fuses the Relu into the following quantization
        elif len(others) == 1 and not direct and \
                others[0].op_type in VALUE_PRESERVING_OPS and \
                others[0].output[0] in quantized:
            plans[tensor] = ('same', others[0].output[0])
        elif direct:
            plans[tensor] = ('reuse', max(direct, key=width))
        else:
            plans[tensor] = ('calibrate', None)
        if tensor in plans:
            quantized.add(tensor)
    return plans


def _calibrated_ranges(model, tensors: list, calibration) -> dict:
    """Min / max of ``tensors`` (always including 0) over the batches."""
    import numpy as np
    import onnx
    from onnx import helper

    probe = onnx.load_from_string(model.SerializeToString())
    probe.graph.output.extend(
        [helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
         for t in tensors])
    session = onnxruntime_session(probe.SerializeToString())
    name = session.get_inputs()[0].name
    ranges = {t: [0.0, 0.0] for t in tensors}
    for batch in calibration:
        for t, out in zip(tensors, session.run(tensors, {name: batch.numpy()})):
            ranges[t][0] = min(ranges[t][0], float(np.min(out)))
            ranges[t][1] = max(ranges[t][1], float(np.max(out)))
    return ranges


def _insert_activation_quantization(g: _OnnxGraph, plans: dict,
                                    ranges: dict) -> None:
    """Apply the plans of :func:`_plan_activation_quantization`: every reader
    of a planned tensor reads its ``DequantizeLinear`` output, except
    quantizers with an offset / multiplier, and narrowed ones that are not the
    grid's origin, which keep reading the float tensor."""
    import numpy as np
    from onnx import helper

    resolved = {}

    def scale_and_zero(tensor):
        if tensor in plans:
            q = resolve(tensor)[0]
        else:  # read by one QAT quantizer only
            q = next(n for n in g.consumers(tensor) if g.per_tensor_q(n, tensor))
        return q.input[1], q.input[2]

    def resolve(tensor):
        """(QuantizeLinear node, DequantizeLinear output) of ``tensor``."""
        if tensor in resolved:
            return resolved[tensor]
        kind, ref = plans[tensor]
        if kind == 'reuse':
            dq = next(n for n in g.consumers(ref.output[0])
                      if n.op_type == 'DequantizeLinear')
            resolved[tensor] = (ref, dq.output[0])
            return resolved[tensor]
        if kind == 'same':
            scale, zero = scale_and_zero(ref)
        elif kind == 'grid_of':
            scale, zero = ref.input[1], ref.input[2]
        else:
            low, high = ranges[tensor]
            step = np.float32(max(high - low, 1e-8) / 255)
            scale = g.add_init(np.array(step, np.float32), tensor + '_out_scale')
            zero = g.add_init(
                np.array(np.clip(round(-low / float(step)), 0, 255), np.uint8),
                tensor + '_out_zp')
        q = helper.make_node('QuantizeLinear', [tensor, scale, zero],
                             [tensor + '_out_q'])
        dq = helper.make_node('DequantizeLinear', [q.output[0], scale, zero],
                              [tensor + '_out_dq'])
        g.graph.node.extend([q, dq])  # copies: keep the graph's own nodes
        resolved[tensor] = (g.graph.node[-2], dq.output[0])
        return resolved[tensor]

    for tensor, (kind, ref) in plans.items():
        rep, dq_out = resolve(tensor)
        for reader in g.consumers(tensor):
            if reader is rep:
                continue
            if g.quantizer_chain(reader) is not None and \
                    not (kind == 'grid_of' and g.clip_only_grid(reader) is ref):
                continue
            if kind == 'reuse' and g.per_tensor_q(reader, tensor):
                # another QAT quantizer of the same tensor: share the widest
                users = g.consumers(reader.output[0])
                if all(u.op_type == 'DequantizeLinear' for u in users):
                    for dq in users:
                        dq.input[0], dq.input[1], dq.input[2] = \
                            rep.output[0], rep.input[1], rep.input[2]
                    g.graph.node.remove(reader)
                    continue
            g.replace_input(reader, tensor, dq_out)


def _refine_weight_grid(g: _OnnxGraph, wdq, rounded) -> None:
    """Multiply each output channel's int8 weights by the integer factor
    ``k`` of :func:`~mmcompress.quant.integer_bias.int32_bias` and divide its
    scale by ``k`` (the weight values stay; the accumulator grid gets finer).

    Args:
        g (_OnnxGraph): The graph.
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
    weight = (stored.astype(np.int64) *
              rounded.factor.numpy().reshape(shape)).astype(np.int8)
    wdq.input[0] = g.add_init(weight, wdq.input[0] + '_refined')
    wdq.input[1] = g.add_init(
        rounded.weight_scale.numpy().reshape(scale.shape),
        wdq.input[1] + '_refined')


def _stored_weight_peak(g: _OnnxGraph, wdq):
    """Largest ``|w|`` per weight-scale entry of int8 weights with zero
    point 0 (refinable by an integer factor), else None."""
    import numpy as np
    from onnx import numpy_helper

    stored = numpy_helper.to_array(g.inits[wdq.input[0]])
    scale = g.value(wdq.input[1])
    zero = g.value(wdq.input[2]) if len(wdq.input) > 2 else None
    if stored.dtype != np.int8 or scale is None or \
            zero is None or np.any(zero != 0):
        return None
    axis = None
    if scale.size > 1:
        axis = next((a.i for a in wdq.attribute if a.name == 'axis'), 1)
    return weight_peak(torch.from_numpy(stored.astype(np.int64)), axis)


def _quantize_bias(g: _OnnxGraph, layers: list) -> None:
    """int32 bias for quantized Conv / ConvTranspose / Gemm, with the weight
    grid refinement, both from
    :func:`~mmcompress.quant.integer_bias.int32_bias` (the definition the
    QAT model's ``integer_bias`` uses too)."""
    from onnx import helper

    for layer in layers:
        if len(layer.input) < 3 or g.value(layer.input[2]) is None:
            continue
        xdq, wdq = g.quantized_layer_parts(layer)
        x_scale, w_scale = g.value(xdq.input[1]), g.value(wdq.input[1])
        bias = g.value(layer.input[2])
        if x_scale is None or w_scale is None or x_scale.size != 1 or \
                w_scale.size not in (1, bias.size):
            continue
        rounded = int32_bias(torch.tensor(bias.reshape(-1)), float(x_scale),
                             torch.tensor(w_scale),
                             _stored_weight_peak(g, wdq))
        _refine_weight_grid(g, wdq, rounded)
        stem = layer.output[0] + '_bias'
        q_name = g.add_init(rounded.value.numpy().reshape(bias.shape),
                            stem + '_int32')
        s_name = g.add_init(rounded.scale.numpy().reshape(bias.shape),
                            stem + '_scale')
        z_name = g.add_init(rounded.value.numpy().reshape(bias.shape) * 0,
                            stem + '_zp')
        dq = helper.make_node('DequantizeLinear', [q_name, s_name, z_name],
                              [stem + '_dq'], axis=0)
        g.graph.node.insert(list(g.graph.node).index(layer), dq)
        layer.input[2] = stem + '_dq'


def optimize_for_onnxruntime(onnx_bytes: bytes,
                             calibration: Sequence[Tensor]) -> bytes:
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
       pooling / reshaping ops (:data:`INTEGER_OPS`) whose inputs are all
       integer (a tensor read by a QAT activation quantizer counts as integer).
       The grid is, in this order of preference:

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
    3. quantizes the float bias of quantized convs / linears to int32 with
       scale ``s_x * s_w`` (as onnxruntime's own quantizer), after refining
       each output channel's weight grid by an integer factor that brings the
       bias closest to it (both defined by
       :func:`~mmcompress.quant.integer_bias.int32_bias`; a QAT model built
       with ``integer_bias`` already adds the BN shifts on this grid).

    Args:
        onnx_bytes (bytes): A model from :func:`export_onnx`.
        calibration (Sequence[Tensor]): Input batches for the calibrated
            ranges.

    Returns:
        bytes: The rewritten model.
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    g = _OnnxGraph(model)
    layers = [n for n in g.graph.node if g.quantized_layer_parts(n) is not None]
    _fold_batchnorm(g, [n for n in layers if n.op_type == 'Conv'])
    plans = _plan_activation_quantization(g, layers)
    ranges = {}
    to_calibrate = [t for t, (kind, _) in plans.items() if kind == 'calibrate']
    if to_calibrate:
        ranges = _calibrated_ranges(model, to_calibrate, calibration)
    _insert_activation_quantization(g, plans, ranges)
    _quantize_bias(g, layers)
    g.topological_sort()
    used = {n for node in g.graph.node for n in node.input}
    for init in [i for i in g.graph.initializer if i.name not in used]:
        g.graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model.SerializeToString()
