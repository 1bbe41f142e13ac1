"""The first two steps of the quantization transform: which layers are
quantized (:func:`select_layers`) and with which quantizer configs
(:func:`override_configs`).

The rules are described in :mod:`mmcompress.quant.transform`. Both steps
only read the model; a selection that quantizes nothing is an error, and a
rule that removes everything another rule asked for is a warning that names
the layers and the fix.
"""

import copy
import difflib
import fnmatch
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch.nn as nn

from .config import QUANT_SLOTS, QuantConfig
from .handlers import float_type_map, layer_type_names

#: Name patterns of the layers that produce a model's outputs (logits, box
#: deltas, segmentation logits, heatmaps) in OpenMMLab heads.
DEFAULT_OUTPUT_LAYERS = (
    # mmpretrain: LinearClsHead / StackedLinearClsHead / VisionTransformerClsHead
    'head.fc',
    'head.layers.head',
    # mmdet dense heads (RetinaNet, GFL, ATSS, FCOS, RPN, ...) and RoI heads
    '*bbox_head*.retina_cls',
    '*bbox_head*.retina_reg',
    '*bbox_head*.gfl_cls',
    '*bbox_head*.gfl_reg',
    '*bbox_head*.atss_cls',
    '*bbox_head*.atss_reg',
    '*bbox_head*.atss_centerness',
    '*bbox_head*.conv_cls',
    '*bbox_head*.conv_reg',
    '*bbox_head*.conv_centerness',
    '*bbox_head*.fc_cls',
    '*bbox_head*.fc_reg',
    '*rpn_head.rpn_cls',
    '*rpn_head.rpn_reg',
    '*mask_head*.conv_logits',
    # mmseg decode / auxiliary heads
    '*decode_head*.conv_seg',
    '*auxiliary_head*.conv_seg',
    # mmpose heatmap / regression heads
    'head.final_layer',
    'head.final_layer.*',
    'head.cls_x',
    'head.cls_y',
)

#: ``filter_fn(module, name) -> bool``: False keeps the layer float.
FilterFn = Callable[[nn.Module, str], bool]


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
    """All layers the transform can swap (a registered float type, exactly),
    in module order.

    Args:
        model (nn.Module): The float model.

    Returns:
        dict[str, nn.Module]: Name -> module.
    """
    types = float_type_map()
    return {
        name: module
        for name, module in model.named_modules()
        if name and type(module) in types
    }


def select_patterns(
    patterns: Iterable[str],
    names: Sequence[str],
    what: str,
    check: bool = True,
    kind: Optional[str] = None,
) -> List[str]:
    """The names matched by any of ``patterns``, in pattern order.

    Args:
        patterns (Iterable[str] | str): The patterns.
        names (Sequence[str]): Candidate names.
        what (str): The option, for error messages (``'exclude'``).
        check (bool): A pattern matching nothing is an error listing close
            names. Defaults to True.
        kind (str, optional): What the names are, for the error message
            (default: the quantizable layer types).

    Returns:
        list[str]: The matched names, without repeats.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    kind = kind or f'quantizable {layer_type_names()} layer'
    selected = []
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f'{what}: patterns must be strings, got {pattern!r}')
        hits = [n for n in names if match_pattern(pattern, n)]
        if check and not hits:
            close = difflib.get_close_matches(
                pattern.replace('*', ''), names, n=5, cutoff=0.4
            )
            raise ValueError(
                f'{what} pattern {pattern!r} matches no {kind}. Close names: '
                f'{close or list(names)[:5]} ({len(names)} in total; '
                'patterns are fnmatch, or '
                "'re:' + a regular expression)"
            )
        selected.extend(h for h in hits if h not in selected)
    return selected


@dataclass
class LayerSelection:
    """The result of :func:`select_layers`.

    Args:
        layers (dict[str, nn.Module]): Every eligible layer, module order.
        chosen (list[str]): The layers to quantize.
        float_reasons (dict[str, str]): Eligible layers kept float by a rule
            -> the rule (``'exclude'``, ``'keep_first_float'``, ...).
    """

    layers: Dict[str, nn.Module]
    chosen: List[str]
    float_reasons: Dict[str, str] = field(default_factory=dict)

    def why_float(self, name: str) -> str:
        """The rule that keeps ``name`` float (``'not in include'`` if none
        removed it)."""
        return self.float_reasons.get(name, 'not in include')


def _summary(names: Sequence[str], selection: LayerSelection) -> str:
    shown = [f'{n} ({selection.why_float(n)})' for n in names[:6]]
    more = f' and {len(names) - 6} more' if len(names) > 6 else ''
    return ', '.join(shown) + more


def select_layers(
    model: nn.Module, config: QuantConfig, filter_fn: Optional[FilterFn] = None
) -> LayerSelection:
    """Step 1: the layers to quantize (``include``, ``exclude``,
    ``keep_first_float``, ``keep_output_float`` / ``output_layers``, then
    ``filter_fn``).

    Args:
        model (nn.Module): The float model.
        config (QuantConfig): The options.
        filter_fn (callable, optional): ``filter_fn(module, name)``; False
            keeps the layer float.

    Returns:
        LayerSelection: The selection (at least one chosen layer).
    """
    layers = eligible_layers(model)
    names = list(layers)
    if not names:
        raise ValueError(
            f'{type(model).__name__} has no {layer_type_names()} layer to quantize'
        )
    included = select_patterns(config.include, names, 'include')
    reasons = {n: 'exclude' for n in select_patterns(config.exclude, names, 'exclude')}
    if config.keep_first_float:
        first_conv = next((n for n in names if isinstance(layers[n], nn.Conv2d)), None)
        if first_conv is not None:
            reasons.setdefault(first_conv, 'keep_first_float')
    if config.keep_output_float:
        if config.output_layers is not None:
            outputs = select_patterns(config.output_layers, names, 'output_layers')
        else:
            outputs = select_patterns(
                DEFAULT_OUTPUT_LAYERS, names, 'output_layers', check=False
            )
            outputs = outputs or [names[-1]]
        for name in outputs:
            reasons.setdefault(name, 'keep_output_float')
    if filter_fn is not None:
        for name in names:
            if name not in reasons and not filter_fn(layers[name], name):
                reasons[name] = 'filter_fn'
    selection = LayerSelection(
        layers, [n for n in included if n not in reasons], reasons
    )
    if not selection.chosen:
        raise ValueError(
            f'quantize_model: no layer left to quantize: include '
            f'{list(_as_list(config.include))} selects {len(included)} of '
            f'{len(names)} {layer_type_names()} layers and the rules keep all '
            f'of them float: {_summary(included, selection)}. Fix: narrow '
            'exclude, set keep_first_float=False / keep_output_float=False '
            '(or give output_layers), or widen include'
        )
    _warn_emptied_includes(config.include, names, selection)
    return selection


def _as_list(patterns) -> list:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _warn_emptied_includes(
    include, names: Sequence[str], selection: LayerSelection
) -> None:
    """Warn for each include pattern all of whose layers stay float."""
    for pattern in _as_list(include):
        hits = [n for n in names if match_pattern(pattern, n)]
        if hits and not any(n in selection.chosen for n in hits):
            warnings.warn(
                f'quantize_model: include pattern {pattern!r} selects '
                f'{len(hits)} layer(s) but other rules keep all of them float: '
                f'{_summary(hits, selection)}; nothing it names is quantized. '
                'Fix: drop them from exclude, set keep_first_float=False / '
                'keep_output_float=False (or give output_layers), or remove '
                'the pattern',
                UserWarning,
                stacklevel=4,
            )


def _merge(default: Optional[dict], override, where: str) -> Optional[dict]:
    if override is None:
        return None
    if not isinstance(override, dict):
        raise TypeError(
            f'{where}: a quantizer override must be a dict or None, got {override!r}'
        )
    if 'type' in override or default is None:
        return copy.deepcopy(override)
    merged = copy.deepcopy(default)
    merged.update(copy.deepcopy(override))
    return merged


def override_configs(selection: LayerSelection, config: QuantConfig) -> Dict[str, dict]:
    """Step 2: the quantizer configs of each chosen layer
    (``dict(w=..., a=..., g=...)``) after ``layer_overrides`` and the
    ``output_quantizers`` readers (which drop their input quantizer).

    Args:
        selection (LayerSelection): From :func:`select_layers`.
        config (QuantConfig): The options.

    Returns:
        dict[str, dict]: Layer name -> ``dict(w, a, g)`` (None = float).
    """
    names = list(selection.layers)
    configs = {n: dict(w=config.w, a=config.a, g=config.g) for n in selection.chosen}
    for pattern, override in (config.layer_overrides or {}).items():
        if not isinstance(override, dict) or not set(override) <= set(QUANT_SLOTS):
            raise ValueError(
                f'layer_overrides[{pattern!r}] must be a dict with keys among '
                f'{QUANT_SLOTS}, got {override!r}'
            )
        hits = select_patterns([pattern], names, 'layer_overrides')
        applied = [n for n in hits if n in configs]
        if not applied:
            warnings.warn(
                f'quantize_model: layer_overrides[{pattern!r}] names only '
                f'layers that stay float: {_summary(hits, selection)}; the '
                'override is ignored. Fix: let the selection rules quantize '
                'them (include / exclude / keep_first_float / '
                'keep_output_float) or remove the override',
                UserWarning,
                stacklevel=3,
            )
        for name in applied:
            for key, value in override.items():
                configs[name][key] = _merge(
                    configs[name][key], value, f'layer_overrides[{pattern!r}].{key}'
                )
    output_cfg = config.output_quantizer_config()
    if output_cfg is not None:
        for name in select_patterns(
            output_cfg['readers'], names, 'output_quantizers.readers'
        ):
            if name in configs:
                configs[name]['a'] = None
    return configs
