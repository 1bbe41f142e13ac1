"""Full-model checkpoint loads must load the model's weights.

mmengine loads checkpoints with ``strict=False``: a weight the checkpoint lacks, or
holds with another shape, keeps its initial (random) value, and the run goes on after
a printed "missing keys" / "size mismatch" list. Loading a KD checkpoint
(``student.*`` keys) with the student config, a teacher checkpoint into the student,
or another architecture's checkpoint then trains or evaluates a random network.

**Rule.** On a *full-model load* a weight of the model that the checkpoint leaves at
its initial value is an error (:class:`UnloadedWeightsError`), naming the missing
module prefixes, the mismatched shapes and the likely cause. A full-model load is
one into an mmengine ``BaseModel`` through ``_load_checkpoint_to_model``: the
Runner's ``load_from``, ``resume`` and stock ``tools/test.py``, and
``mmengine.runner.load_checkpoint(model, ...)`` on a whole model (``init_model``,
``init_detector``, the export tool). Loads into a sub-module are partial by design
and not checked: ``init_cfg=dict(type='Pretrained', ...)`` on a backbone (with or
without ``prefix``), ``load_state_dict`` called directly.

Exceptions to the rule:

* *State a module declares optional*: a module class sets
  ``checkpoint_optional_state = True`` (all of its state, e.g. quantizers, which
  initialize from data when a float checkpoint starts QAT) or a tuple of names of
  its own parameters, buffers or child modules (e.g. ``DistillModel``'s adapters).
  Such keys may be missing.
* *A class-count change*: a tensor whose shape differs from the checkpoint's in its
  first dimension only (a classifier or class-score layer when fine-tuning to a new
  label set) keeps its initial value with a WARNING.
* *An explicit opt-out*: the config's top-level ``allow_unloaded_weights`` (a list of
  key prefixes, or ``True`` for mmengine's plain warning) or the
  :func:`allowed_unloaded_weights` context.
* ``num_batches_tracked`` buffers (as mmengine).

What stayed unloaded is observed, not predicted: a load-time pre-hook on the model
records torch's own missing-key list (after the model's own key-mapping hooks ran,
e.g. ``DistillModel`` mapping plain student keys), and a tensor whose shape differed
from the checkpoint's counts as mismatched only if its value did not change (a
module's own pre-hook may resize it, e.g. a ViT position embedding).
"""

import contextlib
import contextvars
import functools
import logging
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel, is_model_wrapper
from torch import nn
from torch.nn.parameter import is_lazy

from .load_messages import prefix_hint, shorten, top_prefixes

OPTIONAL_ATTR = 'checkpoint_optional_state'
ALLOW_KEY = 'allow_unloaded_weights'

_allowed: contextvars.ContextVar = contextvars.ContextVar(
    'mmcompress_allowed_unloaded_weights', default=()
)


class UnloadedWeightsError(RuntimeError):
    """A full-model checkpoint load would leave weights at their initial values."""


@contextlib.contextmanager
def allowed_unloaded_weights(allowed: Union[bool, Iterable[str], None]):
    """Context in which the given weights may stay unloaded on full-model loads.

    Args:
        allowed (bool | Iterable[str] | None): ``True`` allows any (mmengine's
            warning only), an iterable lists key prefixes (``'roi_head.mask_head'``
            covers every key below it), ``None``/``False`` none.
    """
    if allowed is None or allowed is False:
        value = ()
    elif allowed is True:
        value = True
    elif isinstance(allowed, str):
        value = (allowed,)
    else:
        value = tuple(allowed)
    token = _allowed.set(value)
    try:
        yield
    finally:
        _allowed.reset(token)


def _opted_out(key: str) -> bool:
    allowed = _allowed.get()
    if allowed is True:
        return True
    return any(key == p or key.startswith(p.rstrip('.') + '.') for p in allowed)


def declared_optional(model: nn.Module, key: str) -> bool:
    """Whether a module on the path of ``key`` declares that state optional.

    Args:
        model (nn.Module): The model the key belongs to.
        key (str): A state-dict key of ``model``.

    Returns:
        bool: True if some module along ``key`` has ``checkpoint_optional_state``
        ``True``, or a tuple naming the next component of the key.
    """
    module = model
    parts = key.split('.')
    for index, part in enumerate(parts):
        declared = getattr(module, OPTIONAL_ATTR, ())
        if declared is True or part in declared:
            return True
        if index == len(parts) - 1:
            return False
        module = module._modules.get(part)
        if module is None:
            return False
    return False


def _own_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The tensors ``model.state_dict()`` would hold, without calling it (a model's
    ``state_dict`` may have side effects, e.g. writing student checkpoints)."""
    state = {}
    for name, module in model.named_modules(remove_duplicate=False):
        prefix = name + '.' if name else ''
        for key, param in module._parameters.items():
            if param is not None:
                state[prefix + key] = param
        for key, buf in module._buffers.items():
            if buf is not None and key not in module._non_persistent_buffers_set:
                state[prefix + key] = buf
    return state


class LoadObserver:
    """Record what a full-model load leaves unloaded, then judge it.

    Args:
        model (nn.Module): The (unwrapped) model being loaded.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.missing: Optional[List[str]] = None
        self.ckpt_shapes: Dict[str, Tuple[int, ...]] = {}
        self.before: Dict[str, torch.Tensor] = {}
        self._handle = model.register_load_state_dict_pre_hook(self._pre_hook)

    def _pre_hook(
        self,
        module,
        state_dict,
        prefix,
        local_metadata,
        strict,
        missing_keys,
        unexpected_keys,
        error_msgs,
    ) -> None:
        if module is not self.model or self.missing is not None:
            return
        self.missing = missing_keys  # torch appends to this list as it loads
        self.ckpt_shapes = {
            k[len(prefix) :]: tuple(v.shape)
            for k, v in state_dict.items()
            if k.startswith(prefix) and isinstance(v, torch.Tensor)
        }
        for key, tensor in _own_state(self.model).items():
            shape = self.ckpt_shapes.get(key)
            if (
                shape is not None
                and shape != tuple(tensor.shape)
                and not is_lazy(tensor)
            ):
                self.before[key] = tensor.detach().clone()

    def detach(self) -> None:
        """Remove the hook from the model."""
        self._handle.remove()

    def check(self, filename: str) -> None:
        """Raise :class:`UnloadedWeightsError` or warn (module docstring rule).

        Args:
            filename (str): The checkpoint's name for messages.
        """
        if self.missing is None:
            return  # the model loaded itself without torch's machinery
        own = _own_state(self.model)
        missing = [
            k
            for k in dict.fromkeys(self.missing)
            if not k.endswith('num_batches_tracked')
        ]
        mismatched = [
            k
            for k, old in self.before.items()
            if k in own and torch.equal(own[k].detach(), old)
        ]
        optional = [k for k in missing + mismatched if declared_optional(self.model, k)]
        missing = [k for k in missing if k not in optional and not _opted_out(k)]
        mismatched = [k for k in mismatched if k not in optional and not _opted_out(k)]
        # an empty placeholder (a decomposed layer's float keys, which its own
        # load hook factorises into the parts) has no initial value to keep
        optional = [k for k in optional if k not in own or own[k].numel() > 0]
        class_count = [
            k
            for k in mismatched
            if len(own[k].shape) == len(self.ckpt_shapes[k])
            and own[k].shape[1:] == self.ckpt_shapes[k][1:]
        ]
        other = [k for k in mismatched if k not in class_count]
        name = type(self.model).__name__
        if optional:
            print_log(
                f'{filename}: {len(optional)} tensors of {name} that it declares '
                'optional (e.g. quantizer state) are not in the checkpoint and '
                f'start from their initialization: {shorten(optional, 4)}',
                logger='current',
            )
        if class_count and not (missing or other):
            print_log(
                f'{filename}: {len(class_count)} tensors of {name} keep their '
                'initial values: their first dimension differs from the '
                'checkpoint (as when fine-tuning to a new number of classes): '
                + shorten(self._shape_list(class_count, own), 4)
                + '. If this is not a fine-tune to new classes, the checkpoint '
                'is for another model.',
                logger='current',
                level=logging.WARNING,
            )
        if not (missing or other):
            return
        parts = []
        if missing:
            parts.append(
                'missing from the checkpoint: ' + shorten(top_prefixes(missing, own))
            )
        if other or class_count:
            # the tensors that are not a class-count change first: the cause
            parts.append(
                'shape differs: '
                + shorten(self._shape_list(other + class_count, own), 4)
            )
        hint = (
            prefix_hint(missing, self.ckpt_shapes, filename)
            if missing
            else ' The checkpoint is for another architecture (e.g. the '
            "teacher's, or another width or depth): give the checkpoint "
            'trained with this config.'
        )
        example = top_prefixes(missing or other, own)[0].rstrip('.*')
        raise UnloadedWeightsError(
            f'Checkpoint {filename} does not fit {name}: '
            f'{len(missing) + len(other) + len(class_count)} of '
            f'{sum(not k.endswith("num_batches_tracked") for k in own)} '
            'tensors would keep their initial (random) values; '
            + '; '.join(parts)
            + '.'
            + hint
            + ' To load a partial checkpoint on purpose, list what may stay '
            f"unloaded in the config: `{ALLOW_KEY} = ['{example}']` (key "
            'prefixes; True allows any).'
        )

    def _shape_list(self, keys: List[str], own) -> List[str]:
        return [
            f'{k} (checkpoint {self.ckpt_shapes[k]}, model {tuple(own[k].shape)})'
            for k in keys
        ]


def is_full_model(model: nn.Module) -> bool:
    """Whether a load into ``model`` is a full-model load (an mmengine model).

    Args:
        model (nn.Module): The load target (a wrapper is unwrapped).

    Returns:
        bool: True for an mmengine ``BaseModel``.
    """
    if is_model_wrapper(model):
        model = model.module
    return isinstance(model, BaseModel)


_source: contextvars.ContextVar = contextvars.ContextVar(
    'mmcompress_checkpoint_source', default=(None, None)
)


def remember_source(checkpoint, name: str):
    """Note where ``checkpoint`` (just loaded) came from, for messages.

    Args:
        checkpoint (Any): The loaded object.
        name (str): Its path or URL.

    Returns:
        Any: ``checkpoint``.
    """
    _source.set((id(checkpoint), name))
    return checkpoint


def _source_of(checkpoint) -> str:
    ident, name = _source.get()
    return name if ident == id(checkpoint) and name else 'the checkpoint'


def checked_load_to_model(original):
    """Wrap mmengine's ``_load_checkpoint_to_model`` with the full-model check.

    Args:
        original (Callable): ``mmengine.runner.checkpoint._load_checkpoint_to_model``.

    Returns:
        Callable: Same signature; raises :class:`UnloadedWeightsError` after a
        full-model load that left weights unloaded (module docstring).
    """

    @functools.wraps(original)
    def load_to_model(
        model,
        checkpoint,
        strict=False,
        logger=None,
        revise_keys=[(r'^module\.', '')],  # noqa: B006 (mmengine's default)
    ):
        if not is_full_model(model) or _allowed.get() is True:
            return original(model, checkpoint, strict, logger, revise_keys)
        observer = LoadObserver(model.module if is_model_wrapper(model) else model)
        try:
            result = original(model, checkpoint, strict, logger, revise_keys)
        finally:
            observer.detach()
        observer.check(_source_of(checkpoint))
        return result

    return load_to_model
