"""Lookups and edits on an ONNX graph, shared by the ONNX writing
(:mod:`.onnx_io`) and the integer-graph rewrite (:mod:`.int8`).

Constant values are found once, through initializers, ``Constant`` nodes and
``Identity`` aliases (:meth:`OnnxGraph.value`); unused initializers are
removed in one place (:meth:`OnnxGraph.remove_unused_initializers`).
"""

from typing import Optional

from ..handlers import onnx_layer_ops

#: Elementwise ops an exported activation quantizer may apply before its
#: ``QuantizeLinear`` (offset / multiplier, clip to a narrowed grid).
QUANTIZER_PREFIX_OPS = ('Sub', 'Mul', 'Clip', 'Max', 'Min')


class OnnxGraph:
    """Lookups and edits on an ONNX graph.

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
        self.aliases = {
            n.output[0]: n.input[0] for n in self.graph.node if n.op_type == 'Identity'
        }

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

    def remove_unused_initializers(self) -> None:
        """Drop initializers that no node reads and no graph output names."""
        used = {name for node in self.graph.node for name in node.input}
        used |= {out.name for out in self.graph.output}
        for init in [i for i in self.graph.initializer if i.name not in used]:
            self.graph.initializer.remove(init)
            self.inits.pop(init.name, None)

    def producer(self, name: str):
        """The node writing tensor ``name``, or None (graph input,
        initializer)."""
        return next((n for n in self.graph.node if name in n.output), None)

    def consumers(self, name: str) -> list:
        """The nodes reading tensor ``name``."""
        return [n for n in self.graph.node if name in n.input]

    @staticmethod
    def replace_input(node, old: str, new: str) -> None:
        """Make ``node`` read ``new`` wherever it reads ``old``."""
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new

    def is_activation_dq(self, node) -> bool:
        """A ``DequantizeLinear`` of a computed (not constant) tensor."""
        return (
            node is not None
            and node.op_type == 'DequantizeLinear'
            and not self.is_constant(node.input[0])
        )

    def quantized_layer_parts(self, node):
        """``(input DQ, weight DQ)`` of a quantized layer's op (the
        ``onnx_ops`` of the registered handlers: Conv / ConvTranspose /
        Gemm) on dequantized integer input and weight, else None."""
        if node.op_type not in onnx_layer_ops() or len(node.input) < 2:
            return None
        xdq, wdq = self.producer(node.input[0]), self.producer(node.input[1])
        if (
            not self.is_activation_dq(xdq)
            or wdq is None
            or wdq.op_type != 'DequantizeLinear'
            or wdq.input[0] not in self.inits
        ):
            return None
        return xdq, wdq

    def own_weight_dq(self, layer, weight_inputs=None):
        """The weight ``DequantizeLinear`` of a quantized layer, copied for
        it alone when other layers read it too (a head applied to every
        feature level shares its convs' weights), so that edits of this
        layer's weights leave the others unchanged.

        Args:
            layer: A quantized layer's node (see :meth:`quantized_layer_parts`).
            weight_inputs (tuple, optional): ``(integer weights, scale)``
                tensor names the copy reads instead of the shared node's
                (e.g. the weights before another layer refined them).

        Returns:
            The layer's own weight ``DequantizeLinear`` node.
        """
        from onnx import helper

        wdq = self.producer(layer.input[1])
        if len(self.consumers(wdq.output[0])) == 1 and weight_inputs is None:
            return wdq
        inputs = list(wdq.input)
        if weight_inputs is not None:
            inputs[:2] = weight_inputs
        copy = helper.make_node(
            'DequantizeLinear', inputs, [f'{layer.output[0]}_weight_dq']
        )
        copy.attribute.extend(wdq.attribute)
        self.graph.node.insert(list(self.graph.node).index(layer), copy)
        layer.input[1] = copy.output[0]
        return self.graph.node[list(self.graph.node).index(layer) - 1]

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
        if (
            node.op_type != 'QuantizeLinear'
            or len(node.input) < 3
            or tensor is not None
            and node.input[0] != tensor
        ):
            return False
        scale = self.value(node.input[1])
        return (
            scale is not None
            and scale.size == 1
            and self.value(node.input[2]) is not None
        )

    def clip_only_grid(self, node):
        """For a narrowed quantizer ``clip -> QuantizeLinear`` starting at
        ``node``: its per-tensor ``QuantizeLinear`` (an 8-bit quantization with
        the same scale and zero point, then the clip and this quantizer, equals
        the quantizer itself: the clip bounds are grid points), else None."""
        chain = self.quantizer_chain(node)
        if (
            chain is None
            or not set(chain[0]) <= {'Clip', 'Max', 'Min'}
            or not self.per_tensor_q(chain[1])
        ):
            return None
        return chain[1]

    def topological_sort(self) -> None:
        """Reorder the nodes so every tensor is produced before it is read."""
        available = {i.name for i in self.graph.input} | set(self.inits)
        pending, ordered = list(self.graph.node), []
        while pending:
            ready = [
                n for n in pending if all(not i or i in available for i in n.input)
            ]
            if not ready:
                raise ValueError('optimize_for_onnxruntime produced a cyclic graph')
            for node in ready:
                available.update(node.output)
                ordered.append(node)
            pending = [n for n in pending if all(n is not r for r in ready)]
        del self.graph.node[:]
        self.graph.node.extend(ordered)
