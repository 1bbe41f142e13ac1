"""The quantization transform: swap Conv2d / ConvTranspose2d / Linear /
Conv1d layers for quantized layers in place.

Python API (torchao style): ``quantize_(model, QuantConfig(w=..., a=...),
filter_fn=None)``; ``quantize_model(model, **options)`` and the config entry
``QuantizedModel`` take the same options (the fields of
:class:`~mmcompress.quant.config.QuantConfig`). It runs four steps that other
methods reuse: select (:func:`~mmcompress.quant.selection.select_layers`),
override (:func:`~mmcompress.quant.selection.override_configs`), swap
(:func:`swap_layers`), attach (:func:`attach_hooks`).

No tracing: the transform walks ``named_modules()`` and replaces eligible layers
by the quantized layer of their handler (:mod:`mmcompress.quant.handlers`:
:class:`~mmcompress.quant.layers.QuantConv2d` / ``QuantConvTranspose2d`` /
``QuantLinear`` / ``QuantConv1d``) that shares the float parameters (same
names), so any OpenMMLab model keeps its class, its Python forward code
(heads, post-processing) and its checkpoint format.

Which layers are eligible: modules whose type is exactly a registered float
type: ``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.Linear``, ``nn.Conv1d`` (and
mmcv's thin ``Conv2d`` / ``ConvTranspose2d`` (``'deconv'``) / ``Linear``
wrappers). Subclasses with
their own forward (weight-standardized convs, adaptive padding,
``NonDynamicallyQuantizableLinear`` inside ``nn.MultiheadAttention``, whose weight
is read directly by ``F.multi_head_attention_forward``) are left float: swapping
them would silently change or skip their computation.

Which eligible layers are quantized, in this order:

1. ``include`` patterns (default ``['*']``) select, ``exclude`` patterns remove;
2. ``keep_first_float``: the first ``Conv2d`` in module order (the stem conv that
   sees the image in every OpenMMLab backbone) stays float;
3. ``keep_output_float``: the layers producing the task outputs stay float. They
   are found by the name patterns in :data:`DEFAULT_OUTPUT_LAYERS` (the
   conventions of mmpretrain, mmdet, mmseg and mmpose heads), or by
   ``output_layers`` if given; when no pattern matches, the last eligible layer
   in module order;
   then ``filter_fn(module, name)`` (Python API), False keeps a layer float.
   Nothing left to quantize is an error; an ``include`` pattern all of whose
   layers the other rules keep float is a warning;
4. ``layer_overrides``: ``{pattern: dict(w=..., a=..., g=...)}`` changes the
   quantizer configs of matching layers (a dict without ``type`` updates the
   default config, one with ``type`` replaces it, None makes that part float).
   Later patterns win; a pattern naming only layers that stay float is a
   warning (the override would be ignored);
5. ``output_quantizers``: quantizers on module *outputs* (see below);
6. ``integer_bias``: BN shifts on the int32 grid of the export (see below).

The quantizer slots: ``w`` (weights), ``a`` (layer inputs) and ``g``, a
gradient quantizer (``dict(type='LBTGradQuantizer', bits=4)``, see
:mod:`mmcompress.quant.grad`) on the layer output: identity forward, the
output error quantized in backward, so the layer's weight and input
gradients are computed from the quantized error. Each gradient quantizer
draws its rounding noise from a stream named after its layer.

Patterns are ``fnmatch`` patterns on module names (``'backbone.layer1.*'``) or,
prefixed with ``re:``, regular expressions matched in full
(``'re:neck\\.fpn_convs\\.[0-2]\\.conv'``). A user pattern that matches no eligible
layer is an error that lists close names.

Output quantizers (``output_quantizers=dict(modules=[...], readers=[...],
quantizer=None)``): the quantized layers above round their *inputs* only, so a
residual ``Add``, its two operands and a pooled feature stay float in the QAT
model, while an integer inference graph (onnxruntime's ``QLinearAdd``,
``QLinearConv`` outputs, ``QLinearGlobalAveragePool``) rounds every one of
them to 8 bits. This option trains with a per-tensor quantizer at those
places: each module matched by ``modules`` (any module, e.g. a residual block,
whose output is the post-``Add`` ``ReLU``; the last BN of a block; the
downsample branch; the stem ``ReLU``; the neck) gets a child
``output_quantizer`` applied by a forward hook
(:func:`~mmcompress.quant.output_quantizer.attach_output_quantizer`). A tensor quantized
at its producer must not be rounded again on another grid by the layers that
read it: ``readers`` names those quantized layers (e.g. a block's ``conv1``
and downsample conv), which then drop their own input quantizer and read the
producer's grid, as the identity branch does. ``quantizer`` is the quantizer
config (default: ``a`` with ``signed`` unset, so the sign is decided from
data: post-``ReLU`` outputs get an unsigned grid, BN outputs a signed one).
``configs/quant/mmpretrain/lsq_w8a8_fmnist.py`` shows the patterns of an
mmpretrain ResNet of basic blocks (they hold for mmdet's ResNet too).

Integer bias (``integer_bias=True``, default False): the integer graph folds
each BatchNorm that follows a quantized conv into it and adds the BN shift
as an int32 bias on the accumulator grid ``s_x * s_w * |gamma / sigma| / k``
(and a quantized layer's own bias on ``s_x * s_w / k``), while the QAT model
adds them in float. With this option the QAT model adds them rounded onto
those grids: BN shifts wherever the BN uses its running statistics (eval
mode; frozen BNs in training), own biases in eval mode, so the exported
integer graph computes what the QAT model computes. Forward hooks pair each
BN with the quantized conv whose output it reads; the state dict is
unchanged, and training with BNs in training mode is unchanged, so the
option can be set for evaluating a checkpoint trained without it. See
:mod:`mmcompress.quant.export.integer_bias` (the grid is defined once in
:mod:`mmcompress.quant.export.storage`, for the export too).
"""

import copy
from typing import Dict, List, Optional, Union

import torch.nn as nn
from mmengine.logging import MMLogger

from mmcompress.registry import MODELS

from .config import QuantConfig
from .export.integer_bias import enable_integer_bias
from .grad.quantizer import name_grad_streams
from .handlers import float_type_map, layer_type_names
from .output_quantizer import attach_output_quantizer
from .selection import (
    FilterFn,
    LayerSelection,
    override_configs,
    select_layers,
    select_patterns,
)


def swap_layers(
    model: nn.Module, layers: Dict[str, nn.Module], configs: Dict[str, dict]
) -> List[str]:
    """Step 3: replace each layer by its handler's quantized layer (sharing
    the float parameters), in place.

    Args:
        model (nn.Module): The model.
        layers (dict[str, nn.Module]): Name -> float layer.
        configs (dict[str, dict]): Name -> ``dict(w, a, g)`` quantizer
            configs; a layer whose three configs are None stays float.

    Returns:
        list[str]: The swapped layers.
    """
    types = float_type_map()
    swapped = []
    for name, cfg in configs.items():
        if cfg['w'] is None and cfg['a'] is None and cfg['g'] is None:
            continue
        module = layers[name]
        new = types[type(module)].quant_type.from_float(
            module,
            weight_quantizer=cfg['w'],
            act_quantizer=cfg['a'],
            grad_quantizer=cfg['g'],
        )
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
        swapped.append(name)
    return swapped


def attach_hooks(
    model: nn.Module,
    config: QuantConfig,
    layers: Dict[str, nn.Module],
    swapped: List[str],
) -> None:
    """Step 4: output quantizers and ``integer_bias`` hooks.

    Args:
        model (nn.Module): The model with swapped layers.
        config (QuantConfig): The options.
        layers (dict[str, nn.Module]): Name -> float layer (before the swap).
        swapped (list[str]): The swapped layers.
    """
    logger = MMLogger.get_current_instance()
    output_cfg = config.output_quantizer_config()
    if output_cfg is not None:
        modules = dict(model.named_modules())
        targets = select_patterns(
            output_cfg['modules'],
            [n for n in modules if n],
            'output_quantizers.modules',
            kind='module',
        )
        for name in targets:
            attach_output_quantizer(modules[name], output_cfg['quantizer'], name)
        logger.info(f'quantize_model: output quantizers on {targets}')
    if config.integer_bias:
        biased = [n for n in swapped if layers[n].bias is not None]
        count = enable_integer_bias(model)
        logger.info(
            f'quantize_model: integer_bias: {count} BatchNorm '
            f'modules and {len(biased)} quantized layers with a bias '
            'are hooked (BN shifts after quantized convs and biases '
            'go on the int32 grid in eval mode)'
        )


def _check_integer_bias_target(
    model: nn.Module, selection: LayerSelection, configs: Dict[str, dict]
) -> None:
    if not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ) and not any(
        selection.layers[n].bias is not None and cfg['w'] is not None
        for n, cfg in configs.items()
    ):
        raise ValueError(
            f'integer_bias=True: {type(model).__name__} has no BatchNorm and '
            'no quantized layer with a bias, so there is no bias to put on '
            'an int32 grid'
        )


def quantize_(
    model: nn.Module,
    config: Union[QuantConfig, dict],
    filter_fn: Optional[FilterFn] = None,
) -> nn.Module:
    """Quantize a model's layers in place (select, override, swap, attach).

    Args:
        model (nn.Module): The float model (any OpenMMLab model).
        config (QuantConfig | dict): The options (a dict is checked for
            unknown keys).
        filter_fn (callable, optional): ``filter_fn(module, name) -> bool``
            on each eligible layer left by the config's rules; False keeps
            it float.

    Returns:
        nn.Module: ``model``, with the selected layers swapped.
    """
    config = QuantConfig.from_dict(config, 'quantize_')
    config.check()
    selection = select_layers(model, config, filter_fn)
    configs = override_configs(selection, config)
    if config.integer_bias:
        _check_integer_bias_target(model, selection, configs)
    swapped = swap_layers(model, selection.layers, configs)
    name_grad_streams(model)
    if not swapped and config.output_quantizers is None:
        raise ValueError(
            'quantize_model: nothing to quantize: layer_overrides set w, a '
            f'and g to None for every selected layer ({selection.chosen}). '
            'Fix: keep at least one quantizer config for some layer'
        )
    names = list(selection.layers)
    float_layers = [n for n in names if n not in swapped]
    MMLogger.get_current_instance().info(
        f'quantize_model: {len(swapped)} of {len(names)} {layer_type_names()} '
        f'layers quantized; float: {float_layers}'
    )
    attach_hooks(model, config, selection.layers, swapped)
    return model


def quantize_model(model: nn.Module, **options) -> nn.Module:
    """Swap a model's eligible layers for quantized ones, in place.

    Args:
        model (nn.Module): The float model (any OpenMMLab model).
        **options: The fields of :class:`QuantConfig` (``w``, ``a``, ``g``,
            ``include``, ``exclude``, ``keep_first_float``,
            ``keep_output_float``, ``output_layers``, ``layer_overrides``,
            ``output_quantizers``, ``integer_bias``).

    Returns:
        nn.Module: ``model``, with the selected layers swapped.
    """
    return quantize_(model, QuantConfig.from_dict(options, 'quantize_model'))


@MODELS.register_module(name='QuantizedModel')
def build_quantized_model(
    model: dict, quant: dict, data_preprocessor: Optional[dict] = None
) -> nn.Module:
    """Config entry point: build a float model, then quantize its layers.

    Use as ``model = dict(type='QuantizedModel', model=<float model cfg>,
    quant=dict(w=..., a=..., include=..., exclude=..., ...))``; the returned
    object is the downstream model itself (``ImageClassifier``, ``RetinaNet``,
    ``EncoderDecoder``...), so float checkpoints load into it with ``load_from``
    and the stock ``tools/test.py`` evaluates its checkpoints.

    Args:
        model (dict): The float model config.
        quant (dict): The fields of :class:`QuantConfig`.
        data_preprocessor (dict, optional): Passed to the float model config
            if it has none (the Runner fills it from a top-level
            ``data_preprocessor``).

    Returns:
        nn.Module: The quantized downstream model.
    """
    if not isinstance(model, dict) or not isinstance(quant, dict):
        raise TypeError(
            'QuantizedModel needs model=<float model config dict> '
            f'and quant=<dict>, got model={type(model).__name__}, '
            f'quant={type(quant).__name__}'
        )
    config = QuantConfig.from_dict(quant, 'QuantizedModel')
    model = copy.deepcopy(dict(model))
    if data_preprocessor is not None:
        model.setdefault('data_preprocessor', data_preprocessor)
    return quantize_(MODELS.build(model), config)
