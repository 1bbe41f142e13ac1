"""Plain student checkpoints, written next to every saved checkpoint.

The student is the product: ``load_from`` of a plain downstream checkpoint
initialises the student (:func:`map_plain_student_keys`), and each time the
runner saves ``epoch_3.pth`` (or ``iter_500.pth``,
``best_accuracy_top1_epoch_3.pth``...), the :class:`StudentCheckpointHook`
writes ``epoch_3_student.pth`` next to it::

    {'meta': {'dataset_meta': ..., 'student_of': 'epoch_3.pth'},
     'state_dict': <student weights, no prefix>}

loadable by stock downstream code (``init_model``/``init_detector``, stock
``tools/test.py`` with the student config). No hook has to be configured:
``DistillModel.runner_hooks()`` asks the Runner for this hook (see
:mod:`mmcompress.utils.runner`); a config may also list it in
``custom_hooks`` (it is then not added twice).

How it works: mmengine's ``CheckpointHook`` publishes the path it is about to
save in the MessageHub (runtime info ``last_ckpt``, and ``best_ckpt*`` for
best checkpoints) and then calls ``runner.save_checkpoint``, which calls
``before_save_checkpoint`` of every hook with the checkpoint dict. This hook
(priority ``LOWEST``, after e.g. ``EMAHook`` has put the averaged weights in
the checkpoint) takes the student's part of that checkpoint's ``state_dict``
when a published path is new. Paths published before training starts (restored
by ``resume``) are ignored. Student files whose checkpoint was deleted (e.g. by
``max_keep_ckpts``) are deleted with it. Only the main process writes.
"""

import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from torch import nn

from mmcompress.registry import HOOKS

STUDENT_SUFFIX = '_student'
STUDENT_PREFIX = 'student.'


def student_checkpoint_path(checkpoint_path: str) -> str:
    """``.../epoch_3.pth`` -> ``.../epoch_3_student.pth``."""
    stem, ext = osp.splitext(checkpoint_path)
    return stem + STUDENT_SUFFIX + (ext or '.pth')


def save_student_checkpoint(
    student: nn.Module, filename: str, meta: Optional[dict] = None
) -> None:
    """Save ``student``'s weights as a plain downstream checkpoint.

    Args:
        student (nn.Module): The student model.
        filename (str): Output path.
        meta (dict, optional): Checkpoint meta (``dataset_meta`` lets
            ``init_model`` set class names).
    """
    save_checkpoint(
        dict(meta=meta or {}, state_dict=weights_to_cpu(student.state_dict())), filename
    )


def student_state_dict(state_dict: Dict) -> OrderedDict:
    """The ``student.*`` entries of a ``DistillModel`` state dict, without
    the prefix (with the matching ``_metadata``, as ``student.state_dict()``
    has it).

    Args:
        state_dict (dict): A ``DistillModel`` state dict.

    Returns:
        OrderedDict: The student's state dict.
    """
    student = OrderedDict(
        (key[len(STUDENT_PREFIX) :], value)
        for key, value in state_dict.items()
        if key.startswith(STUDENT_PREFIX)
    )
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        root = STUDENT_PREFIX[:-1]
        student._metadata = OrderedDict(
            ('' if key == root else key[len(STUDENT_PREFIX) :], value)
            for key, value in metadata.items()
            if key == root or key.startswith(STUDENT_PREFIX)
        )
    return student


def map_plain_student_keys(
    module: nn.Module, state_dict: dict, prefix: str, *args
) -> None:
    """``load_state_dict`` pre-hook of ``DistillModel``: map keys of a plain
    student checkpoint (``backbone.x``) to ``student.backbone.x`` so
    ``load_from`` initialises the student; keys of the model's own children
    (``student.*``, ``adapters.*``...) stay as they are.

    Args:
        module (nn.Module): The ``DistillModel``.
        state_dict (dict): The state dict being loaded (changed in place).
        prefix (str): The module's key prefix.
        *args: The other pre-hook arguments (unused).
    """
    own_roots = {name + '.' for name, _ in module.named_children()}
    student_keys = set(module.student.state_dict(keep_vars=True))
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        rel = key[len(prefix) :]
        if any(rel.startswith(r) for r in own_roots):
            continue
        if rel in student_keys:
            state_dict[f'{prefix}{STUDENT_PREFIX}{rel}'] = state_dict.pop(key)


def _published_paths(message_hub: MessageHub) -> Dict[str, str]:
    info = message_hub.runtime_info
    return {
        k: v
        for k, v in info.items()
        if isinstance(v, str) and (k == 'last_ckpt' or k.startswith('best_ckpt'))
    }


@HOOKS.register_module()
class StudentCheckpointHook(Hook):
    """Write a plain student checkpoint for each checkpoint the runner saves
    (see the module docstring). Added automatically for ``DistillModel``.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._seen = None
        self._written: Dict[str, str] = {}

    def before_train(self, runner) -> None:
        """Check the model and remember the paths already published (after a
        possible resume)."""
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not isinstance(getattr(model, 'student', None), nn.Module):
            raise TypeError(
                f'StudentCheckpointHook needs a model with a `student` '
                f'(DistillModel), got {type(model).__name__}; remove the hook '
                'from custom_hooks.'
            )
        self._seen = set(_published_paths(runner.message_hub).values())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Write student files for newly published checkpoint paths."""
        if self._seen is None or not is_main_process():
            return
        new = [
            p
            for p in _published_paths(runner.message_hub).values()
            if p not in self._seen
        ]
        if not new:
            return
        state_dict = student_state_dict(checkpoint['state_dict'])
        dataset_meta = checkpoint.get('meta', {}).get('dataset_meta')
        for path in new:
            self._seen.add(path)
            target = student_checkpoint_path(path)
            meta = dict(student_of=osp.basename(path))
            if dataset_meta is not None:
                meta['dataset_meta'] = dataset_meta
            save_checkpoint(dict(meta=meta, state_dict=state_dict), target)
            self._written[path] = target
            print_log(f'Student checkpoint saved to {target}', logger='current')
        for path, target in list(self._written.items()):
            if path not in new and not osp.exists(path):
                if osp.exists(target):
                    os.remove(target)
                del self._written[path]
