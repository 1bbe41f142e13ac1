"""Quick runs of configs for the tests and benchmarks (as ``mmdet.testing``).

It lives in the package so that ``tests/``, ``benchmarks/`` and ``tools/``
import it the same way (``from mmcompress.testing import ...``) without path
manipulation; nothing in the capability packages imports it.
"""

import os.path as osp
from typing import Dict, Optional, Sequence, Union

from mmengine.config import Config

# Datasets with a ``subset_size`` option (class-balanced subsets).
SUBSET_DATASETS = ('FashionMNISTDataset',)
# Dataset wrappers whose ``dataset`` holds the data.
WRAPPERS = ('RepeatDataset', 'ClassBalancedDataset')
SPLITS = ('train', 'val', 'test')


def stock_tool(package: str, tool: str = 'train') -> str:
    """Path of a downstream package's own ``tools/<tool>.py``.

    Args:
        package (str): ``mmpretrain``, ``mmdet``, ``mmseg`` or ``mmpose``.
        tool (str): Script name without ``.py``. Defaults to ``'train'``.

    Returns:
        str: The script shipped in ``<package>/.mim/tools/``.
    """
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools', f'{tool}.py')
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{package} ships no {path}: reinstall {package} from its wheel '
            '(the .mim folder holds the tools)'
        )
    return path


def shrink_data(
    cfg: Config,
    batch_size: Optional[int] = None,
    subset_size: Union[None, int, Dict[str, Optional[int]]] = None,
    splits: Sequence[str] = SPLITS,
) -> Config:
    """Make the dataloaders of ``cfg`` single-process and optionally small.

    Every ``<split>_dataloader`` that is set gets ``num_workers=0`` and
    ``persistent_workers=False``.

    Args:
        cfg (Config): The config, changed in place.
        batch_size (int, optional): Batch size of every loader. None keeps
            the config's.
        subset_size (int | dict, optional): ``subset_size`` of the (innermost)
            dataset, one value for all loaders or ``{split: size}``; a split
            missing from the dict keeps its dataset. Datasets without the
            option (the scenes are already small) are left whole.
        splits (Sequence[str]): Loaders to change. Defaults to train, val and
            test.

    Returns:
        Config: ``cfg``.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        loader.num_workers = 0
        loader.persistent_workers = False
        if batch_size is not None:
            loader.batch_size = batch_size
        sizes = (
            subset_size
            if isinstance(subset_size, dict)
            else {s: subset_size for s in SPLITS if subset_size is not None}
        )
        if split not in sizes:
            continue
        dataset = loader.dataset
        while dataset.get('type') in WRAPPERS:
            dataset = dataset.dataset
        if dataset.get('type') in SUBSET_DATASETS:
            dataset.subset_size = sizes[split]
    return cfg


def shorten_schedule(
    cfg: Config,
    iters: Optional[int] = None,
    epochs: Optional[int] = None,
    log_interval: Optional[int] = None,
    param_scheduler: Optional[list] = None,
    **checkpoint,
) -> Config:
    """Train ``cfg`` for ``iters`` iterations or ``epochs`` epochs.

    The run validates and saves a checkpoint once, at its end.

    Args:
        cfg (Config): The config, changed in place.
        iters (int, optional): Iterations (an ``IterBasedTrainLoop``).
        epochs (int, optional): Epochs (an epoch-based loop). Exactly one of
            ``iters`` and ``epochs`` is given.
        log_interval (int, optional): ``LoggerHook`` interval. None keeps the
            config's logger.
        param_scheduler (list, optional): Replaces the LR schedule (``[]``:
            constant LR). None keeps the config's.
        **checkpoint: ``CheckpointHook`` arguments that replace the defaults
            (``interval`` = the run's length, e.g. ``max_keep_ckpts=-1``).

    Returns:
        Config: ``cfg``.
    """
    if (iters is None) == (epochs is None):
        raise ValueError(
            f'give exactly one of iters and epochs, got iters={iters}, epochs={epochs}'
        )
    if iters is not None:
        cfg.train_cfg = dict(
            type='IterBasedTrainLoop', max_iters=iters, val_interval=iters
        )
        hook = dict(type='CheckpointHook', by_epoch=False, interval=iters)
    else:
        cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
        hook = dict(type='CheckpointHook', interval=epochs)
    hook.update(checkpoint)
    cfg.default_hooks.checkpoint = hook
    if log_interval is not None:
        cfg.default_hooks.logger = dict(type='LoggerHook', interval=log_interval)
    if param_scheduler is not None:
        cfg.param_scheduler = param_scheduler
    return cfg
