"""Quantizers on module *outputs*: :func:`attach_output_quantizer` (the
``output_quantizers`` option of :mod:`mmcompress.quant.transform`).

A forward hook applies a child ``output_quantizer`` to a module's output, so
the module keeps its class, parameter names and forward code.
"""

from torch import Tensor, nn

from .layers import QuantizerSpec, build_quantizer


def _quantize_output(module: nn.Module, inputs: tuple, output):
    """Forward hook of :func:`attach_output_quantizer`: fake-quantize
    ``output`` with ``module.output_quantizer`` (a module-level function, so
    ``copy.deepcopy`` and pickling of the model keep working)."""
    quantizer = module.output_quantizer
    if isinstance(output, Tensor):
        return quantizer(output)
    if (
        isinstance(output, (tuple, list))
        and len(output) == 1
        and isinstance(output[0], Tensor)
    ):
        return type(output)([quantizer(output[0])])
    raise TypeError(
        f'{type(module).__name__} with an output_quantizer returned '
        f'{type(output).__name__}'
        f'{f" of {len(output)} items" if isinstance(output, (tuple, list)) else ""}'
        '; an output quantizer needs a tensor or a tuple / list holding one '
        'tensor'
    )


def attach_output_quantizer(
    module: nn.Module, quantizer: QuantizerSpec, what: str = ''
) -> nn.Module:
    """Fake-quantize a module's output: register ``quantizer`` as the child
    ``output_quantizer`` of ``module`` and a forward hook that applies it.

    The module keeps its class, parameter names and forward code; the
    quantizer's state (``output_quantizer.step``, ``.initialized``, ...) joins
    the state dict, so QAT checkpoints carry it and a float checkpoint, which
    lacks it, leaves it to the data-driven initialization on the first
    training batch. The quantizer is per tensor: it is the grid one 8-bit
    integer tensor of the exported graph uses (see
    :func:`~mmcompress.quant.export.optimize_for_onnxruntime`).

    Args:
        module (nn.Module): The module whose output is quantized. It must be
            called once per forward pass and return a tensor (or a tuple /
            list holding one tensor, as OpenMMLab necks do).
        quantizer (dict | nn.Module): The quantizer (a config dict is built
            from the registry, e.g. ``dict(type='LSQQuantizer', bits=8)``).
        what (str): The module's name, for error messages.

    Returns:
        nn.Module: The built quantizer.
    """
    what = what or type(module).__name__
    if hasattr(module, 'output_quantizer'):
        raise ValueError(f'{what} already has an output_quantizer')
    built = build_quantizer(quantizer)
    if not isinstance(built, nn.Module):
        raise TypeError(
            f'{what}: the output quantizer must be a quantizer '
            f'config dict or module, got {quantizer!r}'
        )
    if getattr(built, 'per_channel', False):
        raise ValueError(
            f'{what}: output quantizers are per tensor (one integer grid per '
            f'tensor, as onnxruntime QLinearAdd / QLinearConv outputs need); '
            f'got per_channel=True in {quantizer!r}'
        )
    if getattr(built, 'output_in_unit_range', False):
        raise ValueError(
            f'{what}: {type(built).__name__} emits values in a unit range (the '
            "quantized layer's output_scale undoes it), so it cannot quantize a "
            'module output; use a quantizer working in the input units (LSQ, '
            'UniformSTE)'
        )
    param = next(iter(module.parameters()), None)
    if param is not None:
        built.to(param.device)
    built.train(module.training)
    module.add_module('output_quantizer', built)
    module.register_forward_hook(_quantize_output)
    return built
