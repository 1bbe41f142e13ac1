"""The registry of quantized layer types: one handler per float layer type.

A :class:`QuantLayerHandler` says everything the quantization code needs to
know about one kind of layer, so adding a layer type is one file (see
:mod:`mmcompress.quant.layer_types`) and never an edit of the transform, the
export or the integer-bias emulation:

* ``float_types``: the float module types the transform swaps (exact types:
  subclasses with their own forward stay float);
* ``quant_type``: the quantized layer (a :class:`~mmcompress.quant.layers.
  QuantLayerMixin` subclass with ``from_float``) that replaces them;
* ``export_type``: its PyTorch export form (built as ``export_type(layer,
  name)``, see :mod:`mmcompress.quant.export.modules`);
* ``onnx_ops``: the ONNX op types that export form is written as, which the
  integer-graph rewrite recognizes as quantized layers;
* ``folds_batchnorm``: whether the integer graph folds a BatchNorm that reads
  the layer's output into it (and so ``integer_bias`` pairs such BNs with it);
* ``integer_input_dims``: the input ranks for which the export writes an
  integer op with an int32 bias (None: any rank). A linear layer is a
  ``Gemm`` (integer) on 2-d input only, a ``MatMul`` + ``Add`` otherwise.

This module only holds the table (no layer type is imported here);
:mod:`mmcompress.quant.layer_types` registers the built-in types when
:mod:`mmcompress.quant` is imported.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch.nn as nn


@dataclass(frozen=True)
class QuantLayerHandler:
    """How one float layer type is quantized, exported and run in integers.

    Args:
        float_types (tuple[type]): Float module types swapped (exact match).
        quant_type (type): The quantized layer class.
        export_type (type): The export module class, ``export_type(layer,
            name)``.
        onnx_ops (tuple[str]): ONNX op types of the exported layer.
        folds_batchnorm (bool): A following BatchNorm is folded into the
            layer by the integer graph. Defaults to False.
        integer_input_dims (tuple[int], optional): Input ranks run as an
            integer op with an int32 bias; None means every rank.
    """

    float_types: Tuple[type, ...]
    quant_type: type
    export_type: type
    onnx_ops: Tuple[str, ...]
    folds_batchnorm: bool = False
    integer_input_dims: Optional[Tuple[int, ...]] = None

    @property
    def name(self) -> str:
        """str: The name of the first float type (``'Conv2d'``)."""
        return self.float_types[0].__name__

    def integer_op(self, input_dim: int) -> bool:
        """Whether the export runs the layer as an integer op with an int32
        bias for an input of ``input_dim`` dimensions."""
        return self.integer_input_dims is None or input_dim in self.integer_input_dims


_HANDLERS: List[QuantLayerHandler] = []


def register_quant_layer(handler: QuantLayerHandler) -> QuantLayerHandler:
    """Add a layer type to the registry.

    Args:
        handler (QuantLayerHandler): The handler.

    Returns:
        QuantLayerHandler: ``handler``.
    """
    if not isinstance(handler, QuantLayerHandler):
        raise TypeError(
            'register_quant_layer needs a QuantLayerHandler, got '
            f'{type(handler).__name__}'
        )
    for other in _HANDLERS:
        clash = set(other.float_types) & set(handler.float_types)
        if clash or other.quant_type is handler.quant_type:
            raise ValueError(
                f'{handler.quant_type.__name__}: float type(s) '
                f'{sorted(t.__name__ for t in clash) or handler.name} already '
                f'handled by {other.quant_type.__name__}'
            )
    _HANDLERS.append(handler)
    return handler


def quant_handlers() -> Tuple[QuantLayerHandler, ...]:
    """tuple[QuantLayerHandler]: All registered handlers."""
    return tuple(_HANDLERS)


def float_type_map() -> Dict[type, QuantLayerHandler]:
    """dict[type, QuantLayerHandler]: Float module type -> handler."""
    return {t: h for h in _HANDLERS for t in h.float_types}


def handler_of(module: nn.Module) -> Optional[QuantLayerHandler]:
    """The handler of a quantized layer (by ``isinstance``), else None."""
    return next((h for h in _HANDLERS if isinstance(module, h.quant_type)), None)


def quant_layer_types() -> Tuple[type, ...]:
    """tuple[type]: The quantized layer classes."""
    return tuple(h.quant_type for h in _HANDLERS)


def layer_type_names(kind: str = 'float') -> str:
    """Names of the registered types for messages, ``'Conv2d/Linear'``.

    Args:
        kind (str): ``'float'`` or ``'quant'``.

    Returns:
        str: The names joined by ``/``.
    """
    if kind == 'float':
        return '/'.join(h.name for h in _HANDLERS)
    return ' / '.join(h.quant_type.__name__ for h in _HANDLERS)


def onnx_layer_ops(batchnorm_folding: bool = False) -> Tuple[str, ...]:
    """ONNX op types of exported quantized layers.

    Args:
        batchnorm_folding (bool): Only those of handlers that fold a
            following BatchNorm.

    Returns:
        tuple[str]: The op types, in registration order, without repeats.
    """
    ops = []
    for handler in _HANDLERS:
        if batchnorm_folding and not handler.folds_batchnorm:
            continue
        ops.extend(op for op in handler.onnx_ops if op not in ops)
    return tuple(ops)
