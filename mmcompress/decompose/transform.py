"""The decomposition transform: replace convs by cheaper conv sequences in
place, keeping the model's class and the names of every untouched layer (no
FX: the transform walks ``named_modules()`` and sets attributes).

* :func:`plan_decomposition`: per-layer groups / ranks for a FLOPs target,
  from the trained weights (:mod:`.allocate`);
* :func:`apply_plan`: swap the planned layers for
  :class:`~mmcompress.decompose.layers.DecomposedConv2d`;
* :func:`decompose_`: both;
* ``DecomposedModel`` (config entry): build a model and apply a fixed plan;
  ``load_from`` a checkpoint of the undecomposed model initialises the
  decomposed layers from its weights.
"""

import copy
import fnmatch
from typing import Dict, Optional, Sequence

from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
from mmengine.logging import MMLogger
from torch import nn

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .allocate import allocate, layer_candidates, layer_errors
from .flops import count_flops
from .layers import METHODS, DecomposedConv2d

SUPPORTED = (nn.Conv2d, MMCVConv2d)
#: what a FLOPs ratio is a fraction of (:func:`plan_decomposition`)
FLOPS_OF = ('model', 'selected')


def _unsupported_reason(module: nn.Module) -> Optional[str]:
    if type(module) not in SUPPORTED:
        return f'a {type(module).__name__} (supported: plain nn.Conv2d)'
    if module.groups != 1:
        return f'a grouped Conv2d (groups={module.groups}; supported: groups=1)'
    return None


def _is_wildcard(pattern: str) -> bool:
    return any(char in pattern for char in '*?[')


def select_convs(
    model: nn.Module,
    include: Sequence[str] = ('*',),
    exclude: Sequence[str] = (),
) -> Dict[str, nn.Conv2d]:
    """The convs to decompose: names matching ``include`` and not ``exclude``.

    Wildcard patterns (``'*'``, ``'backbone.*'``) skip the layers of other
    types they match (norms, activations, grouped convs); an exact layer name
    (no ``*?[``) that names an unsupported layer is an error.

    Args:
        model (nn.Module): The model.
        include (Sequence[str]): ``fnmatch`` patterns on module names.
        exclude (Sequence[str]): Patterns removed from the selection.

    Returns:
        dict: ``{name: conv}`` in module order.
    """
    chosen = {}
    for name, module in model.named_modules():
        hits = [p for p in include if fnmatch.fnmatchcase(name, p)]
        if not hits or any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        reason = _unsupported_reason(module)
        if reason is None:
            chosen[name] = module
        elif any(not _is_wildcard(p) for p in hits):
            raise ValueError(
                f'decompose: cannot decompose {name}: it is {reason}. Remove it '
                f'from include (matched by {hits}) or add it to exclude'
            )
    if not chosen:
        raise ValueError(
            f'decompose: no nn.Conv2d (groups=1) matches include={list(include)} '
            f'minus exclude={list(exclude)} in {type(model).__name__}'
        )
    return chosen


def plan_decomposition(
    model: nn.Module,
    example_inputs: tuple,
    flops_ratio: float,
    method: str = 'group',
    include: Sequence[str] = ('*',),
    exclude: Sequence[str] = (),
    flops_of: str = 'model',
) -> Dict[str, dict]:
    """Choose groups / ranks per layer so the model keeps ``flops_ratio`` of
    its FLOPs, minimising the summed relative weight errors.

    Args:
        model (nn.Module): The trained, undecomposed model.
        example_inputs (tuple): Arguments of one forward (sizes the maps).
        flops_ratio (float): Target FLOPs / original FLOPs (0.2 = -80 %).
        method (str): ``'group'``, ``'svd'`` or ``'tucker2'``.
        include, exclude (Sequence[str]): Layer selection
            (:func:`select_convs`).
        flops_of (str): What ``flops_ratio`` is a fraction of: ``'model'``
            (the whole model's FLOPs) or ``'selected'`` (only the FLOPs of
            the selected layers, e.g. a detector's backbone at -50 % with
            ``include=['backbone.*']``; the other layers keep theirs).
            Defaults to ``'model'``.

    Returns:
        dict: ``{layer: dict(method=..., ranks=[...])}`` for the layers to
        decompose (kept layers are absent).
    """
    if method not in METHODS:
        raise ValueError(f'decompose: method must be one of {METHODS}, got {method!r}')
    if flops_of not in FLOPS_OF:
        raise ValueError(
            f'decompose: flops_of must be one of {FLOPS_OF}, got {flops_of!r}'
        )
    check_number(
        'flops_ratio', flops_ratio, low=0, high=1, low_open=True, owner='decompose'
    )
    convs = select_convs(model, include, exclude)
    table = count_flops(model, example_inputs)
    total = sum(entry['flops'] for entry in table.values())
    cands = {
        name: layer_candidates(
            conv, method, table[name]['in_hw'], table[name]['out_hw']
        )
        for name, conv in convs.items()
        if name in table
    }
    other = total - sum(table[name]['flops'] for name in cands)
    selected = total - other
    if flops_of == 'model':
        target = flops_ratio * total
    else:
        target = other + flops_ratio * selected
    choice = allocate(cands, other, target)
    new_total = other + sum(c.flops for c in choice.values())
    MMLogger.get_current_instance().info(
        f'decompose ({method}): FLOPs {total} -> {new_total} '
        f'({new_total / total:.3f} of the model; selected layers {selected} -> '
        f'{new_total - other}, {(new_total - other) / max(selected, 1):.3f}; '
        f'target {flops_ratio} of the {flops_of}); '
        f'{sum(bool(c.ranks) for c in choice.values())} of {len(cands)} '
        f'layers decomposed; summed relative weight error '
        f'{layer_errors(choice):.4f}'
    )
    return {
        name: dict(method=method, ranks=list(c.ranks))
        for name, c in choice.items()
        if c.ranks
    }


def apply_plan(
    model: nn.Module, plan: Dict[str, dict], init_from_weights: bool = True
) -> nn.Module:
    """Swap the planned convs for :class:`DecomposedConv2d`, in place.

    Args:
        model (nn.Module): The model.
        plan (dict): ``{layer: dict(method, ranks)}``.
        init_from_weights (bool): Factorise the current weights (False:
            default conv initialisation). Defaults to True.

    Returns:
        nn.Module: ``model``.
    """
    modules = dict(model.named_modules())
    for name, spec in plan.items():
        if name not in modules:
            raise KeyError(
                f'decompose: the plan names {name!r}, which is not a '
                f'module of {type(model).__name__}'
            )
        reason = _unsupported_reason(modules[name])
        if reason is not None:
            raise ValueError(f'decompose: cannot decompose {name}: it is {reason}')
        if set(spec) != {'method', 'ranks'} or spec['method'] not in METHODS:
            raise ValueError(
                f'decompose: plan entry {name}: {spec!r} must be '
                f'dict(method=one of {METHODS}, ranks=[...])'
            )
        layer = DecomposedConv2d(
            modules[name], spec['method'], spec['ranks'], init_from_weights
        )
        parent, _, leaf = name.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, leaf, layer)
    return model


def decompose_(
    model: nn.Module,
    example_inputs: tuple,
    flops_ratio: float,
    method: str = 'group',
    include: Sequence[str] = ('*',),
    exclude: Sequence[str] = (),
    flops_of: str = 'model',
) -> Dict[str, dict]:
    """Plan from the trained weights, then swap the layers (in place).

    Args:
        model (nn.Module): The trained model.
        example_inputs (tuple): Arguments of one forward.
        flops_ratio (float): Target FLOPs / original FLOPs.
        method (str): ``'group'``, ``'svd'`` or ``'tucker2'``.
        include, exclude (Sequence[str]): Layer selection.
        flops_of (str): ``'model'`` or ``'selected'``
            (:func:`plan_decomposition`). Defaults to ``'model'``.

    Returns:
        dict: The plan that was applied.
    """
    plan = plan_decomposition(
        model, example_inputs, flops_ratio, method, include, exclude, flops_of
    )
    apply_plan(model, plan)
    return plan


@MODELS.register_module(name='DecomposedModel')
def build_decomposed_model(
    model: dict, plan: dict, data_preprocessor: Optional[dict] = None
) -> nn.Module:
    """Config entry point: build a model and decompose the layers of ``plan``.

    ``model = dict(type='DecomposedModel', model=<model cfg>, plan={...})``
    (the plan as written by ``tools/decompose.py``). The result is the
    downstream model itself; ``load_from`` of a checkpoint of the
    undecomposed model initialises the decomposed layers from its weights,
    one of the decomposed model loads as it is.

    Args:
        model (dict): The model config.
        plan (dict): ``{layer: dict(method, ranks)}``.
        data_preprocessor (dict, optional): Passed to the model config if it
            has none.

    Returns:
        nn.Module: The decomposed model.
    """
    if not isinstance(model, dict) or not isinstance(plan, dict):
        raise TypeError(
            'DecomposedModel needs model=<model config dict> and plan=<dict>, '
            f'got model={type(model).__name__}, plan={type(plan).__name__}'
        )
    model = copy.deepcopy(dict(model))
    if data_preprocessor is not None:
        model.setdefault('data_preprocessor', data_preprocessor)
    return apply_plan(MODELS.build(model), plan, init_from_weights=False)
