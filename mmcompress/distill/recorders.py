"""Record intermediate values of a model by dotted module path.

A *record spec* (:mod:`.record_spec`) names one value produced during a
forward pass: a submodule's output or input (of a given call), elements of a
tuple output, or a method's return value.

A recorded value that is a tuple or list of tensors (e.g. all FPN levels of
``'neck'``) is kept as a list, so one distillation entry covers all its
elements. :class:`FeatureRecorder` wraps the recorded modules' ``forward``
(and recorded methods) on those instances only while it is entered as a
context manager, so a model outside a recording step runs untouched, and a
deep copy of the model never carries stale wrappers. Wrapping ``forward``
instead of registering forward hooks also records heads that their model runs
as ``self.head.forward(x)`` (mmdet, mmpose), which hooks would miss.

In-place operations can overwrite a recorded tensor after it was recorded
(e.g. ``out += identity`` in a residual block). Each recorded tensor's version
counter is kept; :meth:`FeatureRecorder.mark_inplace_clones` turns on cloning
for the specs whose tensors were modified during a dry run, and fetching a
tensor that was modified anyway raises an error instead of returning a wrong
value. Code traced by ``torch.compile`` has no version counters: there only the
cloning decided by the dry run applies (no check at fetch time).
"""

import difflib
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .record_spec import RecordSpec, get_submodule

_MISSING = object()


class StopForward(Exception):
    """Raised by a recorder to end a forward pass once everything it needs
    has been recorded (the rest of the model is not run)."""


def _tensors(value: Any) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    return value


class _Capture:
    """Values recorded for one spec during one recording context."""

    def __init__(self, spec: RecordSpec) -> None:
        self.spec = spec
        self.calls = 0
        self.values: Dict[int, Any] = {}
        self.versions: Dict[int, List[int]] = {}

    def add(self, value: Any) -> None:
        spec = self.spec
        if spec.needs_all_calls or self.calls == spec.call:
            if spec.clone:
                value = _clone(value)
            self.values[self.calls] = value
            if not torch.compiler.is_compiling():  # no _version in a graph
                self.versions[self.calls] = [t._version for t in _tensors(value)]
        self.calls += 1

    def modified_inplace(self) -> bool:
        if torch.compiler.is_compiling():
            return False  # not checked in a compiled graph (module doc)
        return any(
            [t._version for t in _tensors(self.values[c])] != self.versions[c]
            for c in self.values
        )


class FeatureRecorder:
    """Records values of ``model`` described by named record specs.

    Use as a context manager around a forward pass, then read the values with
    :meth:`get`. Values are always lists of tensors (a single tensor becomes a
    one-element list).

    Args:
        model (nn.Module): The model to record from.
        specs (dict[str, list[RecordSpec]]): Record specs by entry name.
        role (str): Name of the model in error messages.
        stop_after (dict[int, int], optional): For each spec (by ``id``), the
            number of calls after which it is complete. When given, the
            forward pass is ended (:class:`StopForward`) as soon as every
            spec is complete.
    """

    def __init__(
        self,
        model: nn.Module,
        specs: Dict[str, List[RecordSpec]],
        role: str = 'model',
        stop_after: Optional[Dict[int, int]] = None,
    ) -> None:
        self.model = model
        self.specs = specs
        self.role = role
        self.stop_after = stop_after
        self._flat = [s for group in specs.values() for s in group]
        self._captures: Dict[int, _Capture] = {}
        self._patched: list = []
        # Resolve (and validate, with helpful errors) every path once.
        self._targets: Dict[int, nn.Module] = {}
        for spec in self._flat:
            if spec.module is not None:
                self._targets[id(spec)] = get_submodule(model, spec.module, role)
            else:
                owner, name = spec.method.rsplit('.', 1)
                target = get_submodule(model, owner, role)
                self._targets[id(spec)] = target
                if not callable(getattr(target, name, None)):
                    methods = [
                        m
                        for m in dir(type(target))
                        if not m.startswith('_')
                        and callable(getattr(type(target), m, None))
                    ]
                    close = difflib.get_close_matches(name, methods, n=5)
                    raise KeyError(
                        f'{role} submodule {owner!r} '
                        f'({type(target).__name__}) has no method {name!r}. '
                        f'Closest: {close or methods[:8]}.'
                    )

    # ------------------------------------------------------------ recording
    def _on_value(self, spec: RecordSpec, value: Any) -> None:
        capture = self._captures[id(spec)]
        capture.add(value)
        if self.stop_after is not None and all(
            self._captures[id(s)].calls >= self.stop_after[id(s)] for s in self._flat
        ):
            raise StopForward

    def __enter__(self) -> 'FeatureRecorder':
        self._captures = {id(s): _Capture(s) for s in self._flat}
        for spec in self._flat:
            owner = self._targets[id(spec)]
            # Module values are recorded by wrapping the instance's
            # ``forward`` rather than with forward hooks: heads are often run
            # as ``self.head.forward(x)`` (mmdet, mmpose), which skips hooks.
            name = (
                'forward' if spec.module is not None else spec.method.rsplit('.', 1)[1]
            )
            # An instance attribute shadows the class method for this
            # instance only; the previous state is restored on exit.
            previous = owner.__dict__.get(name, _MISSING)
            owner.__dict__[name] = self._wrap(getattr(owner, name), spec)
            self._patched.append((owner, name, previous))
        return self

    def _wrap(self, method, spec: RecordSpec):
        if spec.io == 'input':

            def record_inputs(*args, **kwargs):
                self._on_value(spec, args)
                return method(*args, **kwargs)

            return record_inputs

        def record_output(*args, **kwargs):
            out = method(*args, **kwargs)
            self._on_value(spec, out)
            return out

        return record_output

    def __exit__(self, *exc) -> bool:
        for owner, name, previous in reversed(self._patched):
            if previous is _MISSING:
                owner.__dict__.pop(name, None)
            else:
                owner.__dict__[name] = previous
        self._patched = []
        return False

    # -------------------------------------------------------------- reading
    def clear(self) -> None:
        """Drop the recorded values (they are kept until read otherwise)."""
        self._captures = {}

    def call_counts(self) -> Dict[int, int]:
        """Number of calls seen for each spec (by ``id(spec)``)."""
        return {k: c.calls for k, c in self._captures.items()}

    def mark_inplace_clones(self) -> List[str]:
        """Turn on cloning for specs whose tensors were modified in place.

        Returns:
            list[str]: Descriptions of the specs switched to cloning.
        """
        switched = []
        for spec in self._flat:
            capture = self._captures.get(id(spec))
            if (
                capture is not None
                and capture.values
                and capture.modified_inplace()
                and not spec.clone
            ):
                spec.clone = True
                switched.append(spec.describe())
        return switched

    def _resolve(self, spec: RecordSpec) -> List[torch.Tensor]:
        capture = self._captures[id(spec)]
        if capture.calls == 0:
            raise RuntimeError(
                f'{self.role}: {spec.describe()} was never called in this '
                'forward pass, so nothing was recorded. Record a module that '
                'runs in this forward (for a teacher: in its inference '
                "forward, mode='tensor')."
            )
        if spec.call == 'all':
            calls = sorted(capture.values)
        else:
            call = spec.call if spec.call >= 0 else capture.calls + spec.call
            if call not in capture.values:
                raise RuntimeError(
                    f'{self.role}: {spec.describe()} asks for call '
                    f'{spec.call}, but the module ran {capture.calls} '
                    f'time(s); valid calls: 0..{capture.calls - 1} or '
                    f'-{capture.calls}..-1.'
                )
            calls = [call]
        if capture.modified_inplace():
            raise RuntimeError(
                f'{self.role}: {spec.describe()} was modified in place after '
                'it was recorded (e.g. by an in-place ReLU or `+=`). Set '
                'clone=True in its record spec.'
            )
        out = []
        for call in calls:
            out.extend(self._select(spec, capture.values[call]))
        return out

    def _select(self, spec: RecordSpec, value: Any) -> List[torch.Tensor]:
        if spec.index is not None:
            if not isinstance(value, (tuple, list)):
                raise TypeError(
                    f'{self.role}: {spec.describe()} has index {spec.index} '
                    f'but the value is a {type(value).__name__}, not a tuple.'
                )
            indices = [spec.index] if isinstance(spec.index, int) else spec.index
            try:
                value = [value[i] for i in indices]
            except IndexError:
                raise IndexError(
                    f'{self.role}: {spec.describe()}: index out of range for '
                    f'a tuple of length {len(value)}.'
                ) from None
        elif isinstance(value, torch.Tensor):
            value = [value]
        tensors = _tensors(value)
        if len(tensors) == 0 or len(tensors) != _count_leaves(value):
            raise TypeError(
                f'{self.role}: {spec.describe()} recorded a '
                f'{type(value).__name__} that is not a tensor or a flat '
                'tuple/list of tensors; use `index` to pick tensors.'
            )
        return tensors

    def get(self, name: str) -> List[torch.Tensor]:
        """The recorded tensors of entry ``name`` (list, in spec order)."""
        return [t for spec in self.specs[name] for t in self._resolve(spec)]


def _count_leaves(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return sum(_count_leaves(v) for v in value)
    return 1
