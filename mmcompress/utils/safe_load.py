"""Weights-only unpickling of checkpoint files, with the diagnosis of a refusal.

The unpickling half of the checkpoint policy (:mod:`.checkpoint`):
:func:`safe_torch_load` loads with ``torch.load(weights_only=True)`` and the
mmengine data types of :data:`SAFE_GLOBALS`; a file that fails is scanned
statically and refused as untrusted (:class:`UntrustedCheckpointError`) or
corrupt (:class:`CorruptCheckpointError`); :func:`trusted_checkpoints` is the
opt-in to full unpickling.
"""

import contextlib
import contextvars
import os
import os.path as osp
import pickle
import re
from typing import Iterable, List, Optional, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

TRUST_KEY = 'trusted_checkpoints'

# set by the ``getattr`` stand-in when it refuses an attribute: torch re-raises
# unpickling errors without their cause, and its static scan cannot see this one
_refused_getattr: contextvars.ContextVar = contextvars.ContextVar(
    'mmcompress_refused_getattr', default=None
)


def _numpy_safe_globals() -> list:
    """The numpy callables/classes that pickled arrays, scalars and dtypes use.

    numpy 1 pickles arrays and scalars through ``numpy.core.multiarray``, numpy
    2 through ``numpy._core.multiarray``: both names are allowed, so a
    checkpoint saved with either numpy loads with the other.
    """
    try:  # numpy 2's module (numpy 1.26 has it as an alias)
        from numpy._core import multiarray
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray
    safe = [np.ndarray, np.dtype]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        safe += [
            (multiarray._reconstruct, f'{module}._reconstruct'),
            (multiarray.scalar, f'{module}.scalar'),
        ]
    # numpy >= 1.25 pickles dtypes through their concrete ``numpy.dtypes`` classes
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return safe


def _history_buffer_getattr(obj, name: str):
    """Stand-in for ``getattr`` during safe unpickling.

    mmengine's MessageHub pickles ``HistoryBuffer._statistics_methods``, a dict of
    ``getattr(HistoryBuffer, 'min')``-style references. Allowing the real
    ``getattr`` would hand any attribute of any allowed object to the file; this
    resolves only the statistics methods of ``HistoryBuffer``.
    """
    allowed = {'min', 'max', 'mean', 'current'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    what = f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r})'
    _refused_getattr.set(what)
    raise pickle.UnpicklingError(f'{what} is not allowed in a weights-only checkpoint')


SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
] + _numpy_safe_globals()

_trusted: contextvars.ContextVar = contextvars.ContextVar(
    'mmcompress_trusted_checkpoints', default=()
)


class UntrustedCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs objects whose unpickling could run arbitrary code."""


class CorruptCheckpointError(ValueError):
    """A file that is not a readable checkpoint (empty, truncated, not written
    by ``torch.save``)."""


class _NotTorchSave(ValueError):
    """Raised by the scan for a file without torch.save's structure."""


def _normalise(name: str) -> str:
    if re.match(r'^[a-z][a-z0-9+.-]*://', name):
        return name
    return osp.realpath(osp.expanduser(name))


def is_trusted(filename: str) -> bool:
    """Whether ``filename`` was listed as trusted for the current run.

    Args:
        filename (str): Local path or URL.

    Returns:
        bool: True if the active ``trusted_checkpoints`` setting covers it.
    """
    trusted = _trusted.get()
    if trusted is True:
        return True
    return _normalise(filename) in trusted


@contextlib.contextmanager
def trusted_checkpoints(trusted: Union[bool, Iterable[str], None]):
    """Context in which the given checkpoint files may be fully unpickled.

    Args:
        trusted (bool | Iterable[str] | None): ``True`` trusts every file,
            an iterable lists the trusted paths/URLs, ``None``/``False`` none.
    """
    if trusted is None or trusted is False:
        value = ()
    elif trusted is True:
        value = True
    elif isinstance(trusted, str):
        value = frozenset({_normalise(trusted)})
    else:
        value = frozenset(_normalise(t) for t in trusted)
    token = _trusted.set(value)
    try:
        yield
    finally:
        _trusted.reset(token)


def _not_empty(file, name: str, start: Optional[int]) -> None:
    if start is None:
        size = osp.getsize(file)
    else:
        size = len(file.read(1))
        file.seek(start)
    if size == 0:
        raise CorruptCheckpointError(
            f'Checkpoint {name} is empty (0 bytes): an interrupted save or '
            'download leaves such a file. Delete it and save or download it '
            'again.'
        )


def _legacy_unsafe_globals(file) -> List[str]:
    """:func:`torch.serialization.get_unsafe_globals_in_checkpoint` for the
    pre-zip ``torch.save`` format (several pickles in a row: magic number,
    protocol, system info, then the object), with torch's own scanner."""
    from torch import _weights_only_unpickler as wo

    try:
        magic = wo.Unpickler(file).load()
    except Exception:  # noqa: B902 (any reason: not a pickle)
        magic = None
    if magic != torch.serialization.MAGIC_NUMBER:
        raise _NotTorchSave(
            'it is neither a zip archive nor a legacy torch.save file (no magic number)'
        )
    wo.Unpickler(file).load()  # protocol version
    wo.Unpickler(file).load()  # system info
    found = wo.get_globals_in_pkl(file)
    allowed = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    return sorted(found - allowed)


def _unsafe_globals(file, start: Optional[int]) -> List[str]:
    """The globals the file's pickle needs beyond the weights-only allowlist
    (torch's static scan; nothing is executed). Raises if the file is not a
    readable ``torch.save`` file."""
    if start is not None:
        file.seek(start)
    with contextlib.ExitStack() as stack:
        handle = file if start is not None else stack.enter_context(open(file, 'rb'))
        position = handle.tell()
        is_zip = handle.read(4) == b'PK\x03\x04'
        handle.seek(position)
        if is_zip:
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(handle))
        return _legacy_unsafe_globals(handle)


def _reason(err: BaseException) -> str:
    """One line on why a file could not be read."""
    if isinstance(err, _NotTorchSave):
        return str(err)
    if isinstance(err, EOFError) and not str(err):
        return 'it ends too early (truncated)'
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    line = next(
        (ln for ln in lines if 'WeightsUnpickler error' in ln),
        lines[0] if lines else '',
    )
    return (f'{type(err).__name__}: {line}' if line else type(err).__name__).rstrip('.')


def safe_torch_load(
    file, map_location=None, trust: bool = False, name: Optional[str] = None
):
    """``torch.load`` under the project's policy.

    A file that fails the weights-only load is diagnosed with torch's own scan
    of its pickle (:func:`torch.serialization.get_unsafe_globals_in_checkpoint`;
    nothing runs): globals outside the allowlist make it *untrusted*
    (:class:`UntrustedCheckpointError`, with the opt-in), a file that is not a
    readable ``torch.save`` file (empty, truncated, random bytes, a TorchScript
    archive) is *corrupt* (:class:`CorruptCheckpointError`). Other errors of a
    readable file (e.g. CUDA tensors without ``map_location`` on a CPU
    machine) are raised as torch raised them.

    Args:
        file (str | file-like): What to load.
        map_location: As in :func:`torch.load`.
        trust (bool): Allow full unpickling (may run code from the file).
        name (str, optional): Name used in messages and for the trusted list
            (defaults to ``file`` when it is a path).

    Returns:
        Any: The unpickled object.
    """
    is_path = isinstance(file, (str, os.PathLike))
    name = str(name or (file if is_path else '<buffer>'))
    start = None if is_path else file.tell()
    _not_empty(file, name, start)
    if trust or is_trusted(name):
        return torch.load(file, map_location=map_location, weights_only=False)
    where = f' ({file})' if is_path and str(file) != name else ''
    token = _refused_getattr.set(None)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:
                return torch.load(file, map_location=map_location, weights_only=True)
            except Exception as err:  # noqa: B902 (diagnosed below)
                load_error = err
            try:
                unsafe = _unsafe_globals(file, start)
            except Exception as err:  # noqa: B902 (any reason: unreadable)
                raise CorruptCheckpointError(
                    f'Checkpoint {name}{where} is corrupt or not a checkpoint '
                    f'written by torch.save: {_reason(err)}. Download or save '
                    'it again, or check the path.'
                ) from None
        refused = _refused_getattr.get()
    finally:
        _refused_getattr.reset(token)
    if refused is not None:
        unsafe = unsafe + [refused]
    if unsafe:
        what = ', '.join(f'`{g}`' for g in unsafe)
        raise UntrustedCheckpointError(
            f'Refusing to load checkpoint {name}: it needs unpickling {what}, '
            f'which could run arbitrary code. Plain weights (state_dict + meta) '
            f'and mmengine run files load without this. If you trust the file, '
            f'opt in explicitly: add `{TRUST_KEY} = [{name!r}]` (or '
            f'`{TRUST_KEY} = True`) to the config, or pass '
            f'`trust_checkpoint=True` to the mmcompress component that loads it.'
        ) from None
    if isinstance(load_error, (pickle.UnpicklingError, EOFError)):
        raise CorruptCheckpointError(
            f'Checkpoint {name}{where} is corrupt: its pickle needs no '
            f'disallowed object, yet it cannot be read ({_reason(load_error)}). '
            'Download or save it again.'
        ) from None
    load_error.add_note(f'(while loading checkpoint {name}{where})')
    raise load_error
