"""Record specs: which value of a forward pass a distillation entry records,
and finding the module a dotted path names (with close-name hints).

A *record spec* names one value produced during a forward pass:

* ``'backbone.layer4'`` -- the output of that submodule (first call);
* ``dict(module='neck', index=[0, 1, 2])`` -- elements of a tuple output;
* ``dict(module='head.fc', io='input')`` -- the first positional input;
* ``dict(module='backbone.layer1.0.relu', call=1)`` -- the second call of a
  module run several times (``call=-1``: the last one, ``call='all'``: every
  call, as a list);
* ``dict(method='head.pre_logits')`` -- the return value of a method of a
  submodule (wrapped on that instance only, never on the class);
* a list of any of these -- all recorded values, concatenated into one list.

:mod:`.recorders` records the values these specs name.
"""

import difflib
from typing import List, Optional, Sequence, Union

from torch import nn

RecordSpecCfg = Union[str, dict, Sequence[Union[str, dict]]]
_IO_KINDS = ('output', 'input')


class RecordSpec:
    """One value to record, parsed from a string or a dict.

    Args:
        module (str, optional): Dotted path of the submodule whose output or
            input is recorded. Exclusive with ``method``.
        method (str, optional): Dotted path ``'<submodule>.<method name>'`` of
            a method whose return value is recorded.
        io (str): ``'output'`` or ``'input'`` (modules only). The input is the
            tuple of positional arguments. Defaults to ``'output'``.
        index (int | list[int], optional): Element(s) of a tuple value. For
            inputs it defaults to 0 (the first positional argument).
        call (int | str): Which call of the module/method to record: an int
            (negative counts from the last call) or ``'all'``. Defaults to 0.
        clone (bool): Clone recorded tensors when they are recorded (needed
            when the model modifies them in place later). Defaults to False.
    """

    def __init__(
        self,
        module: Optional[str] = None,
        method: Optional[str] = None,
        io: str = 'output',
        index: Union[int, Sequence[int], None] = None,
        call: Union[int, str] = 0,
        clone: bool = False,
    ) -> None:
        if (module is None) == (method is None):
            raise ValueError(
                'A record spec needs exactly one of `module` and '
                f'`method`, got module={module!r}, '
                f'method={method!r}.'
            )
        if io not in _IO_KINDS:
            raise ValueError(f'Record spec io={io!r} is invalid; valid: {_IO_KINDS}.')
        if method is not None and io != 'output':
            raise ValueError(
                f'Method spec {method!r} records return values only; got io={io!r}.'
            )
        if method is not None and '.' not in method:
            raise ValueError(
                f'Method spec {method!r} must be "<submodule>.<method>", e.g. '
                '"head.pre_logits" (use "<module>" for a forward output).'
            )
        if not (call == 'all' or isinstance(call, int)):
            raise ValueError(
                f'Record spec call={call!r} is invalid; use an '
                "int (negative from the end) or 'all'."
            )
        if index is not None and not isinstance(index, int):
            index = list(index)
            if not all(isinstance(i, int) for i in index):
                raise ValueError(
                    f'Record spec index={index!r} must be an int or a list of ints.'
                )
        self.module = module
        self.method = method
        self.io = io
        self.index = 0 if (index is None and io == 'input') else index
        self.call = call
        self.clone = clone

    @classmethod
    def parse(cls, cfg: RecordSpecCfg) -> List['RecordSpec']:
        """Parse a spec config (str, dict, or list of them) into specs."""
        if isinstance(cfg, str):
            return [cls(module=cfg)]
        if isinstance(cfg, dict):
            try:
                return [cls(**cfg)]
            except TypeError as err:
                raise TypeError(
                    f'Invalid record spec {cfg!r}: {err}. Valid keys: module, '
                    'method, io, index, call, clone.'
                ) from None
        if isinstance(cfg, (list, tuple)) and len(cfg) > 0:
            return [spec for item in cfg for spec in cls.parse(item)]
        raise TypeError(
            f'A record spec must be a str, a dict or a non-empty '
            f'list of them, got {cfg!r}.'
        )

    @property
    def path(self) -> str:
        """The dotted path as written by the user."""
        return self.module if self.module is not None else self.method

    @property
    def needs_all_calls(self) -> bool:
        """Whether the spec can only be resolved after the last call."""
        return self.call == 'all' or self.call < 0

    def describe(self) -> str:
        """A short human-readable description, used in error messages."""
        what = (
            f'method {self.method}()' if self.method else f'{self.io} of {self.module}'
        )
        extra = ''
        if self.index is not None:
            extra += f'[{self.index}]'
        if self.call != 0:
            extra += f' (call {self.call})'
        return what + extra


def closest_module_names(model: nn.Module, name: str, n: int = 5) -> str:
    """Format the module names of ``model`` closest to ``name``."""
    names = [k for k, _ in model.named_modules() if k]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.4)
    if not close:
        prefix = name.rsplit('.', 1)[0] if '.' in name else ''
        close = (
            [k for k in names if k.startswith(prefix)][:n]
            if prefix
            else [k for k in names if '.' not in k][:n]
        )
    return ', '.join(repr(c) for c in close)


def get_submodule(model: nn.Module, path: str, role: str = 'model') -> nn.Module:
    """Return ``model``'s submodule at ``path`` or raise a helpful error.

    Args:
        model (nn.Module): The model.
        path (str): Dotted module name (``''`` is the model itself).
        role (str): How to call the model in the error, e.g. ``'student'``.

    Returns:
        nn.Module: The submodule.
    """
    if path == '':
        return model
    modules = dict(model.named_modules())
    if path not in modules:
        raise KeyError(
            f'{role} ({type(model).__name__}) has no submodule {path!r}. '
            f'Closest valid names: {closest_module_names(model, path)}.'
        )
    return modules[path]
