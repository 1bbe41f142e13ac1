"""What a model built by mmengine's Runner can ask of it: the config's folder and hooks.

mmengine's ``Runner`` builds the model from ``cfg.model`` and then registers the hooks
of the config. A model cannot do two things on its own there:

* **resolve paths in its config like** ``_base_`` **does**: the model dict carries no
  file name, so a relative ``config='./student.py'`` would be read against the working
  directory. While ``Runner.build_model`` runs, :func:`current_config_folder` returns
  the folder of the config file the Runner was made from (``runner.cfg.filename``);
* **bring a hook it needs** (e.g. ``DistillModel``'s plain student checkpoints, which
  must follow every checkpoint the ``CheckpointHook`` saves): after the config's hooks
  are registered, every hook returned by the model's ``runner_hooks()`` method is
  registered too, unless the config already registers a hook of that type.

:func:`install_runner_integration` wraps ``Runner.build_model`` and
``Runner.register_hooks`` for this (idempotent; the wrapped originals are kept as
``__wrapped__``). Code that builds models from a config file outside a Runner can set
the folder itself with :func:`config_folder`.
"""

import contextlib
import contextvars
import functools
import os.path as osp
from typing import Iterator, Optional

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

_CONFIG_FOLDER: contextvars.ContextVar = contextvars.ContextVar(
    'mmcompress_config_folder', default=None
)


@contextlib.contextmanager
def config_folder(folder: Optional[str]) -> Iterator[None]:
    """Within the block, :func:`current_config_folder` returns ``folder``.

    Args:
        folder (str, optional): Folder of the config file whose model is built
            (None: unknown).
    """
    token = _CONFIG_FOLDER.set(osp.abspath(folder) if folder else None)
    try:
        yield
    finally:
        _CONFIG_FOLDER.reset(token)


def current_config_folder() -> Optional[str]:
    """The folder of the config file whose model is being built.

    Returns:
        str | None: Set while ``Runner.build_model`` runs for a config loaded from a
        file, or inside :func:`config_folder`; None otherwise.
    """
    return _CONFIG_FOLDER.get()


def _build_model(original):

    @functools.wraps(original)
    def build_model(self, model):
        filename = getattr(self.cfg, 'filename', None)
        with config_folder(osp.dirname(filename) if filename else None):
            return original(self, model)

    return build_model


def _register_hooks(original):

    @functools.wraps(original)
    def register_hooks(self, default_hooks=None, custom_hooks=None):
        original(self, default_hooks, custom_hooks)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        asked = getattr(model, 'runner_hooks', None)
        if not callable(asked):
            return
        for hook in asked():
            if any(type(h) is type(hook) for h in self._hooks):
                continue  # configured by the user: keep theirs
            self.register_hook(hook)
            print_log(
                f'{type(model).__name__} added {type(hook).__name__} '
                f'(priority {hook.priority}) to the runner hooks',
                logger='current',
            )

    return register_hooks


def install_runner_integration() -> None:
    """Wrap ``Runner.build_model`` and ``Runner.register_hooks`` (module docstring).

    Idempotent.
    """
    for name, wrapper in (
        ('build_model', _build_model),
        ('register_hooks', _register_hooks),
    ):
        method = getattr(Runner, name)
        if not getattr(method, '_mmcompress_wrapper', False):
            wrapped = wrapper(method)
            wrapped._mmcompress_wrapper = True
            setattr(Runner, name, wrapped)
