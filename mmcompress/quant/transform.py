"""The quantization transform: swap Conv2d / ConvTranspose2d / Linear for
quantized layers in place.

No tracing: the transform walks ``named_modules()`` and replaces eligible layers
by :class:`~mmcompress.quant.layers.QuantConv2d` / ``QuantConvTranspose2d`` /
``QuantLinear`` that share the float parameters (same names), so any OpenMMLab model keeps its class, its
Python forward code (heads, post-processing) and its checkpoint format.

Which layers are eligible: modules whose type is exactly ``nn.Conv2d``,
``nn.ConvTranspose2d`` or ``nn.Linear`` (or mmcv's thin ``Conv2d`` /
``ConvTranspose2d`` (``'deconv'``) / ``Linear`` wrappers). Subclasses with
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
4. ``layer_overrides``: ``{pattern: dict(w=..., a=..., g=...)}`` changes the
   quantizer configs of matching layers (a dict without ``type`` updates the
   default config, one with ``type`` replaces it, None makes that part float).
   Later patterns win;
5. ``output_quantizers``: quantizers on module *outputs* (see below);
6. ``integer_bias``: BN shifts on the int32 grid of the export (see below).

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
(:func:`~mmcompress.quant.layers.attach_output_quantizer`). A tensor quantized
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
:mod:`mmcompress.quant.integer_bias` (the grid is defined once there, for the
export too).
"""
import copy
import difflib
import fnmatch
import re
from typing import Dict, Iterable, List, Optional, Sequence

import torch.nn as nn
from mmengine.logging import MMLogger

from mmcompress.registry import MODELS
from .integer_bias import enable_integer_bias
from .layers import (QuantConv2d, QuantConvTranspose2d, QuantLinear,
                     attach_output_quantizer)

#: Name patterns of the layers that produce a model's outputs (logits, box
#: deltas, segmentation logits, heatmaps) in OpenMMLab heads.
DEFAULT_OUTPUT_LAYERS = (
    # mmpretrain: LinearClsHead / StackedLinearClsHead / VisionTransformerClsHead
    'head.fc', 'head.layers.head',
    # mmdet dense heads (RetinaNet, GFL, ATSS, FCOS, RPN, ...) and RoI heads
    '*bbox_head*.retina_cls', '*bbox_head*.retina_reg', '*bbox_head*.gfl_cls',
    '*bbox_head*.gfl_reg', '*bbox_head*.atss_cls', '*bbox_head*.atss_reg',
    '*bbox_head*.atss_centerness', '*bbox_head*.conv_cls',
    '*bbox_head*.conv_reg', '*bbox_head*.conv_centerness',
    '*bbox_head*.fc_cls', '*bbox_head*.fc_reg', '*rpn_head.rpn_cls',
    '*rpn_head.rpn_reg', '*mask_head*.conv_logits',
    # mmseg decode / auxiliary heads
    '*decode_head*.conv_seg', '*auxiliary_head*.conv_seg',
    # mmpose heatmap / regression heads
    'head.final_layer', 'head.final_layer.*', 'head.cls_x', 'head.cls_y')

_QUANT_KEYS = ('w', 'a', 'g')
_OUTPUT_QUANTIZER_KEYS = ('modules', 'readers', 'quantizer')


def _eligible_types() -> Dict[type, type]:
    types = {nn.Conv2d: QuantConv2d, nn.ConvTranspose2d: QuantConvTranspose2d,
             nn.Linear: QuantLinear}
    try:
        from mmcv.cnn.bricks import wrappers
    except ImportError:
        return types
    types[wrappers.Conv2d] = QuantConv2d
    types[wrappers.ConvTranspose2d] = QuantConvTranspose2d
    types[wrappers.Linear] = QuantLinear
    return types


def match_pattern(pattern: str, name: str) -> bool:
    """Whether a module name matches a pattern.

    Args:
        pattern (str): ``fnmatch`` pattern, or ``'re:'`` + a regular expression
            that must match the whole name.
        name (str): Dotted module name.

    Returns:
        bool: True on a match.
    """
    if pattern.startswith('re:'):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def eligible_layers(model: nn.Module) -> Dict[str, nn.Module]:
    """All layers the transform can swap, in module order.

    Args:
        model (nn.Module): The float model.

    Returns:
        dict[str, nn.Module]: Name -> module.
    """
    types = _eligible_types()
    return {
        name: module
        for name, module in model.named_modules()
        if name and type(module) in types
    }


def _select(patterns: Iterable[str], names: Sequence[str], what: str,
            check: bool = True,
            kind: str = 'quantizable Conv2d/ConvTranspose2d/Linear layer'
            ) -> List[str]:
    if isinstance(patterns, str):
        patterns = [patterns]
    selected = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f'{what}: patterns must be strings, got {pattern!r}')
        hits = [n for n in names if match_pattern(pattern, n)]
        if check and not hits:
            close = difflib.get_close_matches(
                pattern.replace('*', ''), names, n=5, cutoff=0.4)
            raise ValueError(
                f'{what} pattern {pattern!r} matches no {kind}. Close names: '
                f'{close or list(names)[:5]} ({len(names)} in total; '
                'patterns are fnmatch, or '
                "'re:' + a regular expression)")
        selected.extend(h for h in hits if h not in selected)
    return selected


def _merge(default: Optional[dict], override, where: str) -> Optional[dict]:
    if override is None:
        return None
    if not isinstance(override, dict):
        raise TypeError(f'{where}: a quantizer override must be a dict or None, '
                        f'got {override!r}')
    if 'type' in override or default is None:
        return copy.deepcopy(override)
    merged = copy.deepcopy(default)
    merged.update(copy.deepcopy(override))
    return merged


def quantize_model(model: nn.Module,
                   w: Optional[dict] = None,
                   a: Optional[dict] = None,
                   g: Optional[dict] = None,
                   include: Sequence[str] = ('*', ),
                   exclude: Sequence[str] = (),
                   keep_first_float: bool = True,
                   keep_output_float: bool = True,
                   output_layers: Optional[Sequence[str]] = None,
                   layer_overrides: Optional[Dict[str, dict]] = None,
                   output_quantizers: Optional[dict] = None,
                   integer_bias: bool = False) -> nn.Module:
    """Swap a model's Conv2d / ConvTranspose2d / Linear layers for quantized
    ones, in place.

    Args:
        model (nn.Module): The float model (any OpenMMLab model).
        w (dict, optional): Weight quantizer config, e.g.
            ``dict(type='LSQQuantizer', bits=4, per_channel=True)``.
        a (dict, optional): Input-activation quantizer config.
        g (dict, optional): Gradient quantizer config.
        include (Sequence[str]): Patterns of layers to quantize.
        exclude (Sequence[str]): Patterns of layers to keep float.
        keep_first_float (bool): Keep the first Conv2d float.
        keep_output_float (bool): Keep the output layers float.
        output_layers (Sequence[str], optional): Patterns of the output layers
            (default :data:`DEFAULT_OUTPUT_LAYERS`).
        layer_overrides (dict, optional): ``{pattern: dict(w=..., a=..., g=...)}``.
        output_quantizers (dict, optional): ``dict(modules=[patterns],
            readers=[patterns], quantizer=None)``: quantize the outputs of the
            matched modules (any module) and drop the input quantizer of the
            quantized layers matched by ``readers``, which read those outputs
            (see the module docstring). ``quantizer`` defaults to ``a``
            without its ``signed`` setting.
        integer_bias (bool): Add the shift of each BatchNorm that follows a
            quantized conv (where the BN uses running statistics) and the
            bias of each quantized layer (in eval mode) on the int32 grid of
            the integer export (see the module docstring). Defaults to False.

    Returns:
        nn.Module: ``model``, with the selected layers swapped.
    """
    if w is None and a is None and g is None:
        raise ValueError('quantize_model: give at least one of w (weights), '
                         'a (activations) or g (gradients) quantizer configs')
    _check_integer_bias(integer_bias, w, a, output_quantizers)
    layers = eligible_layers(model)
    names = list(layers)
    if not names:
        raise ValueError(f'{type(model).__name__} has no Conv2d/'
                         'ConvTranspose2d/Linear layer to quantize')
    chosen = _select(include, names, 'include')
    removed = set(_select(exclude, names, 'exclude'))
    if keep_first_float:
        first_conv = next((n for n in names
                           if isinstance(layers[n], nn.Conv2d)), None)
        if first_conv is not None:
            removed.add(first_conv)
    if keep_output_float:
        if output_layers is not None:
            removed.update(_select(output_layers, names, 'output_layers'))
        else:
            outputs = _select(DEFAULT_OUTPUT_LAYERS, names, 'output_layers',
                              check=False)
            removed.update(outputs or [names[-1]])
    chosen = [n for n in chosen if n not in removed]

    configs = {n: dict(w=w, a=a, g=g) for n in chosen}
    for pattern, override in (layer_overrides or {}).items():
        if not isinstance(override, dict) or \
                not set(override) <= set(_QUANT_KEYS):
            raise ValueError(
                f'layer_overrides[{pattern!r}] must be a dict with keys among '
                f'{_QUANT_KEYS}, got {override!r}')
        for name in _select([pattern], names, 'layer_overrides'):
            if name not in configs:
                continue
            for key, value in override.items():
                configs[name][key] = _merge(configs[name][key], value,
                                            f'layer_overrides[{pattern!r}].{key}')

    output_cfg = _output_quantizer_config(output_quantizers, a)
    if output_cfg is not None:
        for name in _select(output_cfg['readers'], names,
                            'output_quantizers.readers'):
            if name in configs:
                configs[name]['a'] = None

    if integer_bias and not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            for m in model.modules()) and not any(
                layers[n].bias is not None and cfg['w'] is not None
                for n, cfg in configs.items()):
        raise ValueError(
            f'integer_bias=True: {type(model).__name__} has no BatchNorm and '
            'no quantized layer with a bias, so there is no bias to put on '
            'an int32 grid')
    types = _eligible_types()
    swapped = []
    for name, cfg in configs.items():
        if cfg['w'] is None and cfg['a'] is None and cfg['g'] is None:
            continue
        module = layers[name]
        new = types[type(module)].from_float(
            module,
            weight_quantizer=cfg['w'],
            act_quantizer=cfg['a'],
            grad_quantizer=cfg['g'])
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
        swapped.append(name)
    float_layers = [n for n in names if n not in swapped]
    logger = MMLogger.get_current_instance()
    logger.info(
        f'quantize_model: {len(swapped)} of {len(names)} Conv2d/'
        f'ConvTranspose2d/Linear layers quantized; float: {float_layers}')
    if output_cfg is not None:
        modules = dict(model.named_modules())
        targets = _select(output_cfg['modules'], [n for n in modules if n],
                          'output_quantizers.modules', kind='module')
        for name in targets:
            attach_output_quantizer(modules[name], output_cfg['quantizer'], name)
        logger.info(f'quantize_model: output quantizers on {targets}')
    if integer_bias:
        biased = [n for n in swapped if layers[n].bias is not None]
        count = enable_integer_bias(model)
        logger.info(f'quantize_model: integer_bias: {count} BatchNorm '
                    f'modules and {len(biased)} quantized layers with a bias '
                    'are hooked (BN shifts after quantized convs and biases '
                    'go on the int32 grid in eval mode)')
    return model


def _check_integer_bias(integer_bias, w: Optional[dict], a: Optional[dict],
                        output_quantizers: Optional[dict]) -> None:
    """Refuse ``integer_bias`` settings that cannot do anything."""
    if not isinstance(integer_bias, bool):
        raise TypeError(f'integer_bias must be True or False, got '
                        f'{integer_bias!r} ({type(integer_bias).__name__})')
    if not integer_bias:
        return
    if w is None:
        raise ValueError('integer_bias=True needs a weight quantizer config w '
                         '(an int32 bias exists only for integer weights)')
    if a is None and output_quantizers is None:
        raise ValueError('integer_bias=True needs integer conv inputs: an '
                         'activation quantizer config a or output_quantizers')


def _output_quantizer_config(options: Optional[dict],
                             act: Optional[dict]) -> Optional[dict]:
    """Check ``output_quantizers`` and fill in its defaults."""
    if options is None:
        return None
    if not isinstance(options, dict) or 'modules' not in options or \
            not set(options) <= set(_OUTPUT_QUANTIZER_KEYS):
        raise ValueError(
            'output_quantizers must be a dict with the key modules (patterns '
            'of the modules whose outputs are quantized) and optionally '
            f'readers and quantizer (valid keys: {_OUTPUT_QUANTIZER_KEYS}), '
            f'got {options!r}')
    quantizer = options.get('quantizer')
    if quantizer is None:
        if act is None:
            raise ValueError(
                'output_quantizers: give quantizer=<config> (there is no '
                'activation quantizer config a to default to)')
        quantizer = {k: v for k, v in act.items() if k != 'signed'}
    return dict(modules=options['modules'], readers=options.get('readers', ()),
                quantizer=quantizer)


@MODELS.register_module(name='QuantizedModel')
def build_quantized_model(model: dict,
                          quant: dict,
                          data_preprocessor: Optional[dict] = None
                          ) -> nn.Module:
    """Config entry point: build a float model, then quantize its layers.

    Use as ``model = dict(type='QuantizedModel', model=<float model cfg>,
    quant=dict(w=..., a=..., include=..., exclude=..., ...))``; the returned
    object is the downstream model itself (``ImageClassifier``, ``RetinaNet``,
    ``EncoderDecoder``...), so float checkpoints load into it with ``load_from``
    and the stock ``tools/test.py`` evaluates its checkpoints.

    Args:
        model (dict): The float model config.
        quant (dict): Keyword arguments of :func:`quantize_model`.
        data_preprocessor (dict, optional): Passed to the float model config
            if it has none (the Runner fills it from a top-level
            ``data_preprocessor``).

    Returns:
        nn.Module: The quantized downstream model.
    """
    if not isinstance(model, dict) or not isinstance(quant, dict):
        raise TypeError('QuantizedModel needs model=<float model config dict> '
                        f'and quant=<dict>, got model={type(model).__name__}, '
                        f'quant={type(quant).__name__}')
    valid = ('w', 'a', 'g', 'include', 'exclude', 'keep_first_float',
             'keep_output_float', 'output_layers', 'layer_overrides',
             'output_quantizers', 'integer_bias')
    unknown = sorted(set(quant) - set(valid))
    if unknown:
        raise ValueError(f'QuantizedModel: unknown quant keys {unknown}; valid '
                         f'keys: {list(valid)}')
    model = copy.deepcopy(dict(model))
    if data_preprocessor is not None:
        model.setdefault('data_preprocessor', data_preprocessor)
    return quantize_model(MODELS.build(model), **quant)
