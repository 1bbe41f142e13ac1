"""One place for checkpoint loading under torch's ``weights_only=True`` default.

Policy:

* Every file is unpickled with ``torch.load(weights_only=True)``: tensors, plain
  containers, numbers and strings, plus the few *data* types that checkpoints
  written by mmengine's Runner contain (``HistoryBuffer``, references to its
  statistics methods, numpy arrays/scalars/dtypes; listed in
  :data:`.safe_load.SAFE_GLOBALS`). None of these can run code while loading. So
  the user's own run files (``resume``, ``load_from``) and model-zoo weights
  (state_dict + meta) load, from local paths and from URLs alike.
* A file that fails that load is diagnosed with torch's static scan of its pickle
  (:func:`torch.serialization.get_unsafe_globals_in_checkpoint`; nothing runs). If
  it needs any other global (a pickled function, an arbitrary class) it is refused
  with :class:`~.safe_load.UntrustedCheckpointError`, which names the global and
  says how to opt in: list the file in the config's top-level
  ``trusted_checkpoints`` (``True`` trusts every file of the run), or pass
  ``trust_checkpoint=True`` where a checkpoint is given to an mmcompress component
  (e.g. a teacher). Only then is the file loaded with ``weights_only=False``. A
  file that is not a readable ``torch.save`` file (empty, truncated, random bytes)
  raises :class:`~.safe_load.CorruptCheckpointError` with its path instead
  (:mod:`.safe_load`).
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

import functools
import importlib
import os
import os.path as osp
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mme_checkpoint

from .load_check import (
    ALLOW_KEY,
    allowed_unloaded_weights,
    checked_load_to_model,
    remember_source,
)
from .safe_load import TRUST_KEY, safe_torch_load, trusted_checkpoints


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
