"""How mmcompress names reach every OpenMMLab scope (the one place that decides).

mmengine keeps one root registry per kind (``MODELS``, ``HOOKS``...); each downstream
package (``mmdet``, ``mmseg``, ``mmpretrain``, ``mmpose``) owns a child of it with its
own scope. A lookup walks from the current scope's registry *up* to the root and never
sideways into a sibling. So a component registered only in an ``mmcompress`` child would
be invisible from a config whose ``default_scope`` is ``mmdet``.

The rule, therefore: every mmcompress registry is a child of the mmengine root with
scope ``mmcompress`` (so ``type='mmcompress.DistillModel'`` works from anywhere), and
every registration is mirrored into the root registry (so plain ``type='DistillModel'``
resolves from all four downstream scopes, which all descend from the root).

Name clashes (mirroring makes mmcompress names global, so the mirror never takes a
name that is not free):

* a name already registered in the mmengine root by another package (mmengine itself,
  another plugin) is **not** mirrored: the root entry stays untouched and a
  ``UserWarning`` names both classes. The mmcompress class stays reachable as
  ``type='mmcompress.<Name>'`` from every scope (and unprefixed inside the
  ``mmcompress`` scope); ``type='<Name>'`` from a downstream scope keeps resolving to
  the other package's class;
* a second mmcompress class of a name mmcompress already registered raises mmengine's
  ``KeyError`` (``... is already registered``), as in any registry;
* ``force=True`` replaces an mmcompress class in the root only where the root entry is
  the mirror of an mmcompress class, never another package's;
* a package registering a name into the root *after* mmcompress mirrored it gets
  mmengine's ``KeyError`` naming the mmcompress class: register it in that package's
  own scope, or refer to it with its scope prefix.

A downstream child registry is searched before the root, so a downstream class of the
same name would win inside that scope: ``tests/test_registry.py`` checks, for every
mmcompress name, that no downstream scope shadows it.
"""

import warnings
from typing import List, Optional, Type, Union

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
)
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

SCOPE = 'mmcompress'


class MirroredRegistry(Registry):
    """A ``mmcompress``-scoped child registry that also registers into the root.

    Args:
        name (str): Registry name, e.g. ``'model'``.
        parent (Registry): The mmengine root registry of that kind.
    """

    def __init__(self, name: str, parent: Registry) -> None:
        super().__init__(name, parent=parent, scope=SCOPE)
        self._mirrored = set()

    def _register_module(
        self,
        module: Type,
        module_name: Optional[Union[str, List[str]]] = None,
        force: bool = False,
    ) -> None:
        super()._register_module(module, module_name, force)
        if module_name is None:
            module_name = module.__name__
        names = [module_name] if isinstance(module_name, str) else module_name
        for name in names:
            taken = self.parent.module_dict.get(name)
            if taken is None or (force and name in self._mirrored):
                self.parent._register_module(module, name, force=True)
                self._mirrored.add(name)
            elif taken is not module:
                warnings.warn(
                    f'mmcompress {module.__module__}.{module.__qualname__} is '
                    f'registered as {SCOPE}.{name} only: the name {name!r} is '
                    f'already taken in the mmengine root {self.name!r} registry '
                    f'by {taken.__module__}.{taken.__qualname__}, which '
                    f"type='{name}' keeps meaning outside the {SCOPE} scope. "
                    f"Use type='{SCOPE}.{name}' in configs.",
                    UserWarning,
                    stacklevel=3,
                )


MODELS = MirroredRegistry('model', MMENGINE_MODELS)
MODEL_WRAPPERS = MirroredRegistry('model_wrapper', MMENGINE_MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = MirroredRegistry(
    'weight initializer', MMENGINE_WEIGHT_INITIALIZERS
)
DATASETS = MirroredRegistry('dataset', MMENGINE_DATASETS)
DATA_SAMPLERS = MirroredRegistry('data sampler', MMENGINE_DATA_SAMPLERS)
TRANSFORMS = MirroredRegistry('transform', MMENGINE_TRANSFORMS)
HOOKS = MirroredRegistry('hook', MMENGINE_HOOKS)
LOOPS = MirroredRegistry('loop', MMENGINE_LOOPS)
METRICS = MirroredRegistry('metric', MMENGINE_METRICS)
EVALUATOR = MirroredRegistry('evaluator', MMENGINE_EVALUATOR)
OPTIMIZERS = MirroredRegistry('optimizer', MMENGINE_OPTIMIZERS)
OPTIM_WRAPPERS = MirroredRegistry('optim_wrapper', MMENGINE_OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = MirroredRegistry(
    'optimizer wrapper constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
)
PARAM_SCHEDULERS = MirroredRegistry('parameter scheduler', MMENGINE_PARAM_SCHEDULERS)
TASK_UTILS = MirroredRegistry('task util', MMENGINE_TASK_UTILS)
VISUALIZERS = MirroredRegistry('visualizer', MMENGINE_VISUALIZERS)
VISBACKENDS = MirroredRegistry('vis_backend', MMENGINE_VISBACKENDS)
LOG_PROCESSORS = MirroredRegistry('log_processor', MMENGINE_LOG_PROCESSORS)

ALL_REGISTRIES = (
    MODELS,
    MODEL_WRAPPERS,
    WEIGHT_INITIALIZERS,
    DATASETS,
    DATA_SAMPLERS,
    TRANSFORMS,
    HOOKS,
    LOOPS,
    METRICS,
    EVALUATOR,
    OPTIMIZERS,
    OPTIM_WRAPPERS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    PARAM_SCHEDULERS,
    TASK_UTILS,
    VISUALIZERS,
    VISBACKENDS,
    LOG_PROCESSORS,
)
