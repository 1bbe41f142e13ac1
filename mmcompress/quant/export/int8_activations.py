"""The activation part of the integer-graph rewrite
(:func:`~.int8.optimize_for_onnxruntime`): which float tensors between
integer ops get an 8-bit ``Q -> DQ``, on which grid, and inserting them.
"""

from ..handlers import onnx_layer_ops
from .onnx_graph import QUANTIZER_PREFIX_OPS, OnnxGraph
from .runtime import onnxruntime_session

#: Ops onnxruntime runs on 8-bit tensors when their inputs come from
#: ``DequantizeLinear`` and their output goes to one ``QuantizeLinear``.
INTEGER_OPS = (
    'Add',
    'Relu',
    'MaxPool',
    'AveragePool',
    'GlobalAveragePool',
    'Reshape',
    'Flatten',
    'Resize',
)
#: Of those, the ops whose outputs are input values (a selection or a new
#: shape): quantization commutes with them exactly (``Resize`` only in its
#: ``nearest`` mode, the FPN upsampling).
VALUE_PRESERVING_OPS = ('MaxPool', 'Reshape', 'Flatten', 'Resize')
#: Ops of :data:`INTEGER_OPS` whose other inputs are shapes or scales.
SHAPE_INPUT_OPS = ('Reshape', 'Resize')


def mapped_op(node) -> bool:
    """Whether the rewrite runs ``node`` on 8-bit tensors (an op of
    :data:`INTEGER_OPS`; ``Resize`` in ``nearest`` mode only)."""
    if node.op_type != 'Resize':
        return node.op_type in INTEGER_OPS
    mode = next((a.s for a in node.attribute if a.name == 'mode'), b'nearest')
    return mode == b'nearest'


def plan_activation_quantization(g: OnnxGraph, layers: list) -> dict:
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
        if (
            out in layer_outputs
            or g.is_activation_dq(node)
            or any(g.per_tensor_q(r, out) for r in g.consumers(out))
        ):
            integer.add(out)
        elif mapped_op(node):
            inputs = node.input[:1] if node.op_type in SHAPE_INPUT_OPS else node.input
            if all(i in integer for i in inputs):
                integer.add(out)

    def width(q):
        info = np.iinfo(g.value(q.input[2]).dtype)
        return (info.max - info.min) * float(g.value(q.input[1]).reshape(-1)[0])

    plans, quantized = {}, set()
    for node in reversed(list(g.graph.node)):
        if (
            node.op_type in ('QuantizeLinear', 'DequantizeLinear')
            or not node.output
            or node.output[0] not in integer
        ):
            continue
        tensor = node.output[0]
        readers = [r for r in g.consumers(tensor) if r.op_type != 'Shape']
        direct = [r for r in readers if g.per_tensor_q(r, tensor)]
        entries = [
            r for r in readers if r not in direct and g.quantizer_chain(r) is not None
        ]
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
        elif (
            len(others) == 1
            and not direct
            and others[0].op_type in VALUE_PRESERVING_OPS
            and mapped_op(others[0])
            and others[0].output[0] in quantized
        ):
            plans[tensor] = ('same', others[0].output[0])
        elif direct:
            plans[tensor] = ('reuse', max(direct, key=width))
        else:
            plans[tensor] = ('calibrate', None)
        if tensor in plans:
            quantized.add(tensor)
    return plans


def calibrated_ranges(model, tensors: list, calibration) -> dict:
    """Min / max of ``tensors`` (always including 0) over the batches."""
    import numpy as np
    import onnx
    from onnx import helper

    probe = onnx.load_from_string(model.SerializeToString())
    probe.graph.output.extend(
        [
            helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
            for t in tensors
        ]
    )
    session = onnxruntime_session(probe.SerializeToString())
    name = session.get_inputs()[0].name
    ranges = {t: [0.0, 0.0] for t in tensors}
    for batch in calibration:
        for t, out in zip(tensors, session.run(tensors, {name: batch.numpy()})):
            ranges[t][0] = min(ranges[t][0], float(np.min(out)))
            ranges[t][1] = max(ranges[t][1], float(np.max(out)))
    return ranges


def insert_activation_quantization(g: OnnxGraph, plans: dict, ranges: dict) -> None:
    """Apply the plans of :func:`plan_activation_quantization`: every reader
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
            dq = next(
                n for n in g.consumers(ref.output[0]) if n.op_type == 'DequantizeLinear'
            )
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
                tensor + '_out_zp',
            )
        q = helper.make_node(
            'QuantizeLinear', [tensor, scale, zero], [tensor + '_out_q']
        )
        dq = helper.make_node(
            'DequantizeLinear', [q.output[0], scale, zero], [tensor + '_out_dq']
        )
        g.graph.node.extend([q, dq])  # copies: keep the graph's own nodes
        resolved[tensor] = (g.graph.node[-2], dq.output[0])
        return resolved[tensor]

    for tensor, (kind, ref) in plans.items():
        rep, dq_out = resolve(tensor)
        for reader in g.consumers(tensor):
            if reader is rep:
                continue
            if g.quantizer_chain(reader) is not None and not (
                kind == 'grid_of' and g.clip_only_grid(reader) is ref
            ):
                continue
            if kind == 'reuse' and g.per_tensor_q(reader, tensor):
                # another QAT quantizer of the same tensor: share the widest
                users = g.consumers(reader.output[0])
                if all(u.op_type == 'DequantizeLinear' for u in users):
                    for dq in users:
                        dq.input[0], dq.input[1], dq.input[2] = (
                            rep.output[0],
                            rep.input[1],
                            rep.input[2],
                        )
                    g.graph.node.remove(reader)
                    continue
            g.replace_input(reader, tensor, dq_out)


def float_islands(g: OnnxGraph) -> dict:
    """Ops of the rewritten graph that read an 8-bit tensor but that the
    rewrite cannot map to an integer kernel: onnxruntime runs them in float
    between integer ops (a "float island", with layout conversions around it).

    Layers kept float by the quantization config (a ``Conv`` / ``Gemm`` with
    float weights), quantizer ops and ``Shape`` are not islands.

    Returns:
        dict: op type -> names of its nodes (empty when none).
    """
    skip = {'QuantizeLinear', 'DequantizeLinear', 'Shape', *onnx_layer_ops()}
    islands = {}
    for node in g.graph.node:
        if node.op_type in skip or mapped_op(node):
            continue
        if node.op_type in QUANTIZER_PREFIX_OPS and g.quantizer_chain(node):
            continue
        if any(g.is_activation_dq(g.producer(i)) for i in node.input if i):
            islands.setdefault(node.op_type, []).append(node.name or node.output[0])
    return islands
