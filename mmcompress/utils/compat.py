"""Compatibility fixes for today's stack, applied once when mmcompress is imported.

torchvision 0.28 on PyPI is a CUDA-linked build. With the CPU build of torch its C++
operators (``torchvision::nms``...) are not registered, and ``import torchvision`` dies
in ``torchvision._meta_registrations``, which registers *fake* (meta) kernels for those
very operators. Everything else in torchvision (transforms, models, datasets) works.
mmpretrain imports torchvision, and mmengine's Runner imports it to collect the
environment, so the failure breaks every OpenMMLab run on a CPU machine.

The fix: a meta-path finder that loads the real ``_meta_registrations`` module and
tolerates exactly that error ("operator torchvision::<op> does not exist"): the fake
kernels it could not register belong to operators that do not exist in this process.
Where torchvision's operators do load (a matching build, a GPU machine), the module
runs unchanged and the finder has no effect. ``torchvision.ops`` C++ operators remain
unavailable on CPU; mmcv.ops provides the ones OpenMMLab models use.

mmengine 0.10.7 also assumes a GPU for distributed training with the ``pytorch``
launcher: it calls ``torch.cuda.set_device`` and wraps the model in DDP with
``device_ids=[LOCAL_RANK]``, both of which fail on a CPU-only machine (and ``nccl``
needs CUDA). :func:`install_cpu_distributed_fix` makes the CPU case work (gloo, no
device ids) and leaves GPU runs untouched.

Likewise ``AmpOptimWrapper`` (``--amp`` of every OpenMMLab ``tools/train.py``) asserts
a GPU. :func:`install_cpu_amp_fix` lets it run on a CPU-only machine with bfloat16
autocast, which needs no loss scaling (bfloat16 has float32's exponent range).
"""

import atexit
import functools
import importlib.abc
import importlib.machinery
import re
import sys
from types import ModuleType

import torch

_META_MODULE = 'torchvision._meta_registrations'
_MISSING_OP = re.compile(r'operator torchvision::\w+ does not exist')


class _TolerantLoader(importlib.abc.Loader):
    """Run a module's real loader, tolerating missing torchvision operators.

    Args:
        loader (importlib.abc.Loader): The loader found for the real module.
    """

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._loader.exec_module(module)
        except RuntimeError as err:
            if not _MISSING_OP.search(str(err)):
                raise
            module.skipped_registration = str(err)


class _TorchvisionMetaFinder(importlib.abc.MetaPathFinder):
    """Find ``torchvision._meta_registrations`` and give it a tolerant loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _META_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _TolerantLoader(spec.loader)
        return spec


def install_torchvision_fix() -> None:
    """Make ``import torchvision`` work with a CPU torch (idempotent)."""
    if any(isinstance(f, _TorchvisionMetaFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionMetaFinder())


def _cpu_only() -> bool:
    from mmengine.device import is_mlu_available, is_musa_available, is_npu_available

    return not (
        torch.cuda.is_available()
        or is_npu_available()
        or is_mlu_available()
        or is_musa_available()
    )


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def install_cpu_distributed_fix() -> None:
    """Let mmengine's ``pytorch`` launcher and DDP wrapper run on CPU (idempotent).

    On a machine without accelerators, ``init_dist('pytorch', backend='nccl')``
    initialises ``gloo`` instead (with a log line) and skips
    ``torch.cuda.set_device``; ``MMDistributedDataParallel`` drops ``device_ids``
    for a module whose parameters live on the CPU. The gloo process group is
    destroyed at interpreter exit (``atexit``): left to the interpreter's
    final teardown, its threads aborted one process in four on this machine
    after training had finished ("terminate called without an active
    exception", exit code -6), failing ``dist_train.sh``.
    """
    from mmengine.dist import utils as dist_utils
    from mmengine.logging import print_log
    from mmengine.model.wrappers import MMDistributedDataParallel

    init_pytorch = dist_utils._init_dist_pytorch
    if not getattr(init_pytorch, '_mmcompress_cpu_fix', False):

        @functools.wraps(init_pytorch)
        def init_dist_pytorch(backend, init_backend='torch', **kwargs):
            if not _cpu_only() or init_backend != 'torch':
                return init_pytorch(backend, init_backend=init_backend, **kwargs)
            if backend != 'gloo':
                print_log(
                    f'mmcompress: no accelerator found, using the gloo '
                    f'backend instead of {backend!r}',
                    logger='current',
                )
            torch.distributed.init_process_group(backend='gloo', **kwargs)
            atexit.register(_destroy_process_group)

        init_dist_pytorch._mmcompress_cpu_fix = True
        dist_utils._init_dist_pytorch = init_dist_pytorch

    ddp_init = MMDistributedDataParallel.__init__
    if not getattr(ddp_init, '_mmcompress_cpu_fix', False):

        @functools.wraps(ddp_init)
        def __init__(self, module, detect_anomalous_params=False, **kwargs):
            devices = {p.device.type for p in module.parameters()}
            if devices <= {'cpu'}:
                kwargs.pop('device_ids', None)
                kwargs.pop('output_device', None)
            ddp_init(self, module, detect_anomalous_params, **kwargs)

        __init__._mmcompress_cpu_fix = True
        MMDistributedDataParallel.__init__ = __init__


def install_cpu_amp_fix() -> None:
    """Let ``AmpOptimWrapper`` train on a CPU-only machine (idempotent).

    Without an accelerator it autocasts to ``bfloat16`` (or the configured
    ``dtype``) and uses a disabled ``GradScaler`` (loss scaling is a float16
    device concern); with one, mmengine's behaviour is unchanged.
    """
    from mmengine.logging import print_log
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    amp_init = AmpOptimWrapper.__init__
    if getattr(amp_init, '_mmcompress_cpu_fix', False):
        return

    @functools.wraps(amp_init)
    def __init__(self, loss_scale='dynamic', dtype=None, use_fsdp=False, **kwargs):
        if not _cpu_only():
            return amp_init(self, loss_scale, dtype, use_fsdp, **kwargs)
        OptimWrapper.__init__(self, **kwargs)
        if isinstance(dtype, str):
            if dtype not in AmpOptimWrapper.valid_dtypes:
                raise ValueError(
                    f'dtype={dtype!r} is not valid; use one of '
                    f'{AmpOptimWrapper.valid_dtypes}'
                )
            dtype = getattr(torch, dtype)
        self.cast_dtype = dtype or torch.bfloat16
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        print_log(
            f'mmcompress: no accelerator found, AMP autocasts to '
            f'{self.cast_dtype} on the CPU without loss scaling',
            logger='current',
        )

    __init__._mmcompress_cpu_fix = True
    AmpOptimWrapper.__init__ = __init__
