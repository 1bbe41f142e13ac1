"""Which quantizer slot a gradient quantizer may go in (checked by the
quantized layers when they build their quantizers)."""

from typing import Optional, Union

import torch.nn as nn

from mmcompress.registry import MODELS

QuantizerSpec = Optional[Union[dict, nn.Module]]


def _spec_name(spec: QuantizerSpec) -> str:
    return spec.get('type', '?') if isinstance(spec, dict) else type(spec).__name__


def is_grad_quantizer(spec: QuantizerSpec) -> bool:
    """Whether a quantizer config / module is a gradient quantizer (its
    class sets ``is_grad_quantizer``).

    Args:
        spec (dict | nn.Module | None): The quantizer or its config.

    Returns:
        bool: True for a gradient quantizer.
    """
    if isinstance(spec, dict):
        kind = spec.get('type')
        spec = MODELS.get(kind) if isinstance(kind, str) else kind
    return bool(getattr(spec, 'is_grad_quantizer', False))


def check_grad_slot(
    layer: str,
    quantized_backward: bool,
    weight_quantizer: QuantizerSpec,
    act_quantizer: QuantizerSpec,
    grad_quantizer: QuantizerSpec,
) -> None:
    """Gradient quantizers go in the ``g`` slot only, and only on a layer type
    with a quantized backward.

    Args:
        layer (str): The layer class name, for messages.
        quantized_backward (bool): The layer type's ``quantized_backward``.
        weight_quantizer, act_quantizer, grad_quantizer: The three slots.
    """
    for slot, spec in (('w', weight_quantizer), ('a', act_quantizer)):
        if is_grad_quantizer(spec):
            raise ValueError(
                f'{layer}: {_spec_name(spec)} is a gradient quantizer but was '
                f'given as the {slot} quantizer; put it in g '
                "(quant=dict(g=dict(type='LBTGradQuantizer', bits=4)))"
            )
    if grad_quantizer is None:
        return
    if not is_grad_quantizer(grad_quantizer):
        raise ValueError(
            f'{layer}: g must be a gradient quantizer (identity forward, '
            f'quantized backward, e.g. LBTGradQuantizer), got '
            f'{_spec_name(grad_quantizer)}, which would quantize the layer '
            'output in the forward pass'
        )
    if not quantized_backward:
        raise ValueError(
            f'{layer} has no quantized backward (quantized_backward=False): a '
            f'gradient quantizer ({_spec_name(grad_quantizer)}) cannot be '
            'attached; keep this layer type out of g with '
            "layer_overrides={'<pattern>': dict(g=None)}"
        )
