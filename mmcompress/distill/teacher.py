"""Building models from configs and loading frozen teachers.

A model is given either as an inline model config (``dict(type=...)``) or as
``dict(config=PATH_OR_DICT, ...)`` where ``PATH`` is

* a model-zoo name of a downstream package, ``'pkg::rel/path.py'`` (e.g.
  ``'mmdet::gfl/gfl_r50_fpn_1x_coco.py'``,
  ``'mmpretrain::resnet/resnet18_8xb32_in1k.py'``);
* a config file. A relative path resolves like ``_base_``: against the folder
  of the config file the model is built from (known while mmengine's Runner
  builds the model, see :mod:`mmcompress.utils.runner`); a relative path found
  only against the working directory is used with a warning; absolute paths
  (and ``{{ fileDirname }}/...``) are used as they are.

Configs from files are built in their own ``default_scope`` and inherit the
file's top-level ``data_preprocessor`` the way mmengine's Runner does.
"""

import copy
import os
import os.path as osp
from typing import Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from torch import nn

from mmcompress.registry import MODELS
from mmcompress.utils.runner import current_config_folder

TEACHER_KEYS = (
    'config',
    'checkpoint',
    'data_preprocessor',
    'trust_checkpoint',
    'precision',
)
TEACHER_PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
_ZOO_EXAMPLE = "'mmpretrain::resnet/resnet18_8xb32_in1k.py'"


def _config_dict(cfg: dict) -> ConfigDict:
    """A deep copy as ``ConfigDict``: downstream models read their nested
    configs by attribute (e.g. mmseg's ``self.test_cfg.mode``), as they get
    them from the Runner."""
    if isinstance(cfg, Config):
        cfg = cfg._cfg_dict
    return ConfigDict(copy.deepcopy(dict(cfg)))


def resolve_config_path(path: str, role: str) -> str:
    """The config file ``path`` names (module docstring).

    Args:
        path (str): Absolute path, or relative to the folder of the config
            file being built.
        role (str): ``'student'``/``'teacher ...'``, used in messages.

    Returns:
        str: The path of the existing file.
    """
    path = osp.expanduser(path)
    if osp.isabs(path):
        if osp.isfile(path):
            return path
        raise FileNotFoundError(f'{role} config file {path!r} does not exist.')
    folder = current_config_folder()
    cwd = os.getcwd()
    if folder is not None:
        tried = osp.normpath(osp.join(folder, path))
        if osp.isfile(tried):
            return tried
        if osp.isfile(path):
            print_log(
                f'{role} config {path!r} is not in the folder of the config '
                f'file ({folder}) but was found in the working directory '
                f'({cwd}) and is used from there. Relative config paths '
                "resolve against the config file's folder like `_base_`: "
                'write the path relative to that folder.',
                logger='current',
                level=30,
            )
            return osp.abspath(path)
        raise FileNotFoundError(
            f'{role} config file {path!r} not found: tried {tried} (relative '
            f"to the config file's folder {folder}, like `_base_`) and "
            f'{osp.join(cwd, path)} (working directory). Give the path '
            "relative to the config file's folder, an absolute path, or a "
            f'model-zoo name such as {_ZOO_EXAMPLE}.'
        )
    if osp.isfile(path):
        return osp.abspath(path)
    raise FileNotFoundError(
        f'{role} config file {path!r} not found: tried '
        f'{osp.join(cwd, path)} (the model is built outside a Runner, so '
        f'relative paths resolve against the working directory {cwd}; '
        'wrap the build in mmcompress.utils.runner.config_folder(...) to '
        "resolve them against a config file's folder). Give an existing "
        f'path or a model-zoo name such as {_ZOO_EXAMPLE}.'
    )


def _load_zoo_config(name: str, role: str) -> Config:
    """The config of a model-zoo name ``'pkg::rel/path.py'``."""
    from mmengine.hub import get_config
    from mmengine.utils import get_installed_path, is_installed

    package = name.split('::', 1)[0]
    if not is_installed(package):
        raise FileNotFoundError(
            f'{role} config {name!r}: package {package!r} is not installed.'
        )
    try:
        return get_config(name)
    except (FileNotFoundError, ValueError, AssertionError) as err:
        folder = osp.join(get_installed_path(package), '.mim', 'configs')
        raise FileNotFoundError(
            f'{role} config {name!r} is not a config of {package} '
            f'(looked in {folder}): {err}. Model-zoo names are '
            f'<package>::<path under its configs/>, e.g. {_ZOO_EXAMPLE}.'
        ) from err


def load_model_config(config, role: str) -> Tuple[ConfigDict, Optional[str]]:
    """Resolve a model config and the scope to build it in.

    Args:
        config (str | dict): Inline model config, a model-zoo name
            (``'pkg::rel/path.py'``) or a config file path (module
            docstring).
        role (str): ``'student'``/``'teacher'``, used in error messages.

    Returns:
        tuple[ConfigDict, str | None]: The model config and its scope
        (``default_scope`` of the file; None: the current scope).
    """
    if isinstance(config, dict):
        if 'type' not in config:
            raise ValueError(
                f'{role} model config needs a `type`, got keys {sorted(config)}.'
            )
        return _config_dict(config), None
    if not isinstance(config, str):
        raise TypeError(
            f'{role} config must be a model dict or a config '
            f'path, got {type(config).__name__}.'
        )
    if '::' in config:
        cfg = _load_zoo_config(config, role)
    else:
        cfg = Config.fromfile(resolve_config_path(config, role))
    if 'model' not in cfg:
        raise KeyError(f'{role} config {config!r} has no `model`.')
    model_cfg = _config_dict(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', _config_dict(cfg.data_preprocessor))
    return model_cfg, cfg.get('default_scope')


def resolve_model_config(
    cfg: dict, role: str, data_preprocessor: Optional[dict]
) -> Tuple[ConfigDict, Optional[str]]:
    """The model config and scope of ``cfg`` (an inline model config or
    ``dict(config=...)``), with ``data_preprocessor`` as the default
    preprocessor of inline configs.

    Args:
        cfg (dict): ``dict(type=...)`` or ``dict(config=...)``.
        role (str): Used in error messages.
        data_preprocessor (dict, optional): The DistillModel's
            ``data_preprocessor`` argument.

    Returns:
        tuple[ConfigDict, str | None]: As :func:`load_model_config`.
    """
    if not isinstance(cfg, dict):
        raise TypeError(
            f'{role} must be a model config dict, got {type(cfg).__name__}.'
        )
    model_cfg, scope = load_model_config(
        cfg['config'] if 'config' in cfg else cfg, role
    )
    if data_preprocessor is not None and scope is None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(data_preprocessor))
    return model_cfg, scope


def build_model(model_cfg: dict, scope: Optional[str]) -> nn.Module:
    """Build ``model_cfg`` from ``MODELS`` in ``scope`` (None: current)."""
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(model_cfg)


def _format_keys(keys, limit: int = 10) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (f' ... ({len(keys)} in all)' if len(keys) > limit else '')


def load_teacher_weights(
    teacher: nn.Module, checkpoint: str, trust: bool = False
) -> None:
    """Load ``checkpoint`` into ``teacher`` strictly, with clear errors.

    Loading goes through mmengine's ``CheckpointLoader`` with mmcompress's
    checkpoint policy (``weights_only`` unpickling; URLs served from the torch
    hub cache).

    Args:
        teacher (nn.Module): The teacher model.
        checkpoint (str): Local path or URL.
        trust (bool): Allow full unpickling of this file.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmcompress.utils.safe_load import trusted_checkpoints

    is_url = '://' in checkpoint
    if not is_url and not osp.isfile(osp.expanduser(checkpoint)):
        raise FileNotFoundError(
            f'Teacher checkpoint {checkpoint!r} does not exist. Give a local '
            'path or a URL (served from the torch hub cache when offline).'
        )
    with trusted_checkpoints([checkpoint] if trust else None):
        loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = (
        loaded.get('state_dict', loaded) if isinstance(loaded, dict) else loaded
    )
    if not isinstance(state_dict, dict):
        raise TypeError(
            f'Teacher checkpoint {checkpoint!r} holds a '
            f'{type(state_dict).__name__}, not a state dict.'
        )
    state_dict = {
        (k[len('module.') :] if k.startswith('module.') else k): v
        for k, v in state_dict.items()
    }
    own = teacher.state_dict()
    missing = [
        k for k in own if k not in state_dict and not k.endswith('num_batches_tracked')
    ]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in state_dict.items()
        if k in own
        and isinstance(v, torch.Tensor)
        and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f'missing keys: {_format_keys(missing)}')
        if unexpected:
            parts.append(f'unexpected keys: {_format_keys(unexpected)}')
        if mismatched:
            parts.append(f'shape mismatches: {_format_keys(mismatched, 5)}')
        raise RuntimeError(
            f'Teacher checkpoint {checkpoint!r} does not match the teacher '
            f'config ({type(teacher).__name__}): ' + '; '.join(parts) + '.'
        )
    teacher.load_state_dict(
        {k: v for k, v in state_dict.items() if k in own}, strict=False
    )


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode with all parameters frozen."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def teacher_dtype(name: str, cfg: dict) -> Optional[torch.dtype]:
    """The autocast dtype of a teacher's ``precision`` (None: fp32).

    Args:
        name (str): Teacher name, used in messages.
        cfg (dict): The teacher config.

    Returns:
        torch.dtype | None: The dtype.
    """
    precision = cfg.get('precision', 'fp32')
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(
            f'Teacher {name!r}: precision={precision!r} is invalid; use '
            f'one of {sorted(TEACHER_PRECISIONS)}.'
        )
    return TEACHER_PRECISIONS[precision]


def build_teacher(
    name: str,
    cfg: dict,
    student_preprocessor_cfg: Optional[dict],
    data_preprocessor: Optional[dict],
) -> Tuple[nn.Module, Optional[nn.Module]]:
    """Build, load and freeze one teacher.

    Args:
        name (str): Teacher name.
        cfg (dict): ``dict(config=..., checkpoint=..., ...)`` (keys
            :data:`TEACHER_KEYS`).
        student_preprocessor_cfg (dict, optional): The student's
            preprocessor config, compared with the teacher's for
            ``data_preprocessor='auto'``.
        data_preprocessor (dict, optional): The DistillModel's
            ``data_preprocessor`` argument.

    Returns:
        tuple: The frozen teacher, and its own data preprocessor (None when
        it shares the student's).
    """
    if not isinstance(cfg, dict) or 'config' not in cfg:
        raise ValueError(
            f'Teacher {name!r} must be dict(config=..., checkpoint=...), got {cfg!r}.'
        )
    unknown = set(cfg) - set(TEACHER_KEYS)
    if unknown:
        raise KeyError(
            f'Teacher {name!r}: unknown keys {sorted(unknown)}'
            f'; valid keys: {TEACHER_KEYS}.'
        )
    config = cfg['config']
    model_cfg, scope = resolve_model_config(
        config
        if isinstance(config, dict) and 'type' in config
        else dict(config=config),
        f'teacher {name!r}',
        data_preprocessor,
    )
    shares_student_preprocessor = (
        model_cfg.get('data_preprocessor') == student_preprocessor_cfg
    )
    model = build_model(model_cfg, scope)
    checkpoint = cfg.get('checkpoint')
    if checkpoint is None:
        print_log(
            f'Teacher {name!r} has no checkpoint: it is initialised by '
            'its own init_cfg (random without one).',
            logger='current',
            level=30,
        )
        model.init_weights()
    else:
        load_teacher_weights(model, checkpoint, cfg.get('trust_checkpoint', False))
    freeze(model)
    mode = cfg.get('data_preprocessor', 'auto')
    if mode == 'auto':
        mode = 'student' if shares_student_preprocessor else 'own'
    if mode == 'student':
        preprocessor = None
    elif mode == 'own':
        preprocessor = model.data_preprocessor
    elif isinstance(mode, dict):
        preprocessor = build_model(mode, scope)
    else:
        raise ValueError(
            f'Teacher {name!r}: data_preprocessor={mode!r} is invalid; use '
            "'auto', 'student', 'own' or a preprocessor config."
        )
    return model, preprocessor
