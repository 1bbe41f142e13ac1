"""One place for checkpoint loading under torch's ``weights_only=True`` default.

Policy:

* Every file is unpickled with ``torch.load(weights_only=True)``: tensors, plain
  containers, numbers and strings, plus the few *data* types that checkpoints
  written by mmengine's Runner contain (``HistoryBuffer``, references to its
  statistics methods, numpy arrays/scalars/dtypes; listed in
  :data:`SAFE_GLOBALS`). None of these can run code while loading. So the user's
  own run files (``resume``, ``load_from``) and model-zoo weights (state_dict +
  meta) load, from local paths and from URLs alike.
* A file that fails that load is diagnosed with torch's static scan of its pickle
  (:func:`torch.serialization.get_unsafe_globals_in_checkpoint`; nothing runs). If
  it needs any other global (a pickled function, an arbitrary class) it is refused
  with :class:`UntrustedCheckpointError`, which names the global and says how to
  opt in: list the file in the config's top-level ``trusted_checkpoints`` (``True``
  trusts every file of the run), or pass ``trust_checkpoint=True`` where a
  checkpoint is given to an mmcompress component (e.g. a teacher). Only then is
  the file loaded with ``weights_only=False``. A file that is not a readable
  ``torch.save`` file (empty, truncated, random bytes) raises
  :class:`CorruptCheckpointError` with its path instead.
* URLs are resolved from the torch hub cache (``$TORCH_HOME/hub/checkpoints``), and
  downloaded there only if the network allows (rank 0 first, the other ranks after
  a barrier, as mmengine does); torch.hub's own loader is bypassed because it
  defaults to ``weights_only=False``.
* Full-model loads must load the model's weights (:mod:`.load_check`).

:func:`install_checkpoint_policy` applies this to mmengine's ``CheckpointLoader``
(the single dispatch point of ``load_checkpoint``, ``Runner.load_checkpoint``,
``Runner.resume``, ``init_model``/``init_detector``...) and to
``_load_checkpoint_to_model``, and reads ``trusted_checkpoints`` and
``allow_unloaded_weights`` from the Runner's config.
"""

import contextlib
import contextvars
import functools
import importlib
import os
import os.path as osp
import pickle
import re
from typing import Iterable, List, Optional, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mme_checkpoint

from .load_check import (
    ALLOW_KEY,
    allowed_unloaded_weights,
    checked_load_to_model,
    remember_source,
)

TRUST_KEY = 'trusted_checkpoints'

# set by the ``getattr`` stand-in when it refuses an attribute: torch re-raises
# unpickling errors without their cause, and its static scan cannot see this one
_refused_getattr: contextvars.ContextVar = contextvars.ContextVar(
    'mmcompress_refused_getattr', default=None
)


def _numpy_safe_globals() -> list:
    """The numpy callables/classes that pickled arrays, scalars and dtypes use."""
    multiarray = np.core.multiarray
    safe = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
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


def hub_cache_path(url: str) -> str:
    """Where torch.hub caches ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    return osp.join(
        torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path)
    )


def _load_from_local(filename, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename} can not be found (working directory: {os.getcwd()})'
        )
    return remember_source(safe_torch_load(filename, map_location), filename)


def _fetch_to_cache(url: str, cached: str, progress: bool):
    """Download ``url`` to ``cached`` unless it is there.

    Returns:
        FileNotFoundError | None: The error to raise (returned, not raised, so
        that rank 0 still reaches the barrier the other ranks wait at).
    """
    if osp.isfile(cached):
        return None
    os.makedirs(osp.dirname(cached), exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, cached, progress=progress)
    except Exception as err:  # noqa: B902 (no network, 404...: say where to put it)
        return FileNotFoundError(
            f'checkpoint {url} is not in the torch hub cache ({cached}) '
            f'and could not be downloaded ({type(err).__name__}: {err}). '
            f'Copy the file to {cached}, or give a local path instead.'
        )
    return None


def _load_from_http(filename, map_location=None, model_dir=None, progress=False):
    """Load a URL from the torch hub cache, downloading it there if needed.

    As mmengine's http loader: in a distributed run rank 0 downloads first and
    the other ranks wait at a barrier, then read the cached file (downloading
    it themselves only if it is still missing, e.g. on another node without
    a shared disk).
    """
    cached = (
        osp.join(model_dir, osp.basename(urlparse(filename).path))
        if model_dir
        else hub_cache_path(filename)
    )
    rank, world_size = get_dist_info()
    error = _fetch_to_cache(filename, cached, progress) if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            error = _fetch_to_cache(filename, cached, progress)
    if error is not None:
        raise error
    return remember_source(
        safe_torch_load(cached, map_location, name=filename), filename
    )


def _runner_load_checkpoint(original):

    @functools.wraps(original)
    def load_checkpoint(self, filename, *args, **kwargs):
        with (
            trusted_checkpoints(self.cfg.get(TRUST_KEY)),
            allowed_unloaded_weights(self.cfg.get(ALLOW_KEY)),
        ):
            return original(self, filename, *args, **kwargs)

    return load_checkpoint


def install_checkpoint_policy() -> None:
    """Route mmengine's checkpoint loading through this policy (idempotent).

    * ``CheckpointLoader``'s local and http(s) schemes (and the module-level
      ``load_from_http`` the ``open-mmlab://``, ``torchvision://``, ``mmcls://``
      schemes call) load with :func:`safe_torch_load`.
    * ``_load_checkpoint_to_model`` (used by ``Runner.load_checkpoint``,
      ``load_checkpoint``, inferencers) checks full-model loads
      (:mod:`mmcompress.utils.load_check`).
    * ``Runner.load_checkpoint`` (``load_from``, ``resume``) reads
      ``trusted_checkpoints`` and ``allow_unloaded_weights`` from the config.
    """
    mme_checkpoint.CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True
    )
    mme_checkpoint.CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=_load_from_http, force=True
    )
    # the openmmlab/torchvision/mmcls schemes call this module-level name
    mme_checkpoint.load_from_http = _load_from_http
    for module_name in (
        'mmengine.runner.checkpoint',
        'mmengine.runner.runner',
        'mmengine.infer.infer',
    ):
        module = importlib.import_module(module_name)
        if not hasattr(module._load_checkpoint_to_model, '__wrapped__'):
            module._load_checkpoint_to_model = checked_load_to_model(
                module._load_checkpoint_to_model
            )
    if not hasattr(Runner.load_checkpoint, '__wrapped__'):
        Runner.load_checkpoint = _runner_load_checkpoint(Runner.load_checkpoint)
    print_log(
        'mmcompress: checkpoint loading uses weights_only=True with '
        'mmengine data types allowed',
        logger='current',
        level=10,
    )
