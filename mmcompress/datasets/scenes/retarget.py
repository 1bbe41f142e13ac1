"""Point a scene config at another generated data root."""

import os.path as osp

from mmengine.config import Config

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATORS = ('val_evaluator', 'test_evaluator')


def point_config_at_scenes(cfg: Config, data_root: str) -> Config:
    """Make every dataloader and COCO evaluator of ``cfg`` read ``data_root``.

    The scene configs default to ``data/scenes/<task>_bench``; tests and
    experiments that generate another root (``tools/generate_scenes.py --out``)
    use this instead of editing the nested dataset and evaluator entries by hand.
    Dataset wrappers (``RepeatDataset``...) are followed to the inner dataset;
    an evaluator's ``ann_file`` keeps its file name under ``annotations/``.

    Args:
        cfg (Config): A config built on ``configs/_base_/datasets/scenes_*.py``;
            changed in place.
        data_root (str): A root written by ``generate_scenes``.

    Returns:
        Config: ``cfg``.
    """
    if not osp.isdir(data_root):
        raise FileNotFoundError(
            f'{data_root} is not a directory; generate it with '
            '`python tools/generate_scenes.py --task det|seg|pose --out '
            f'{data_root}`.'
        )
    root = data_root.rstrip('/') + '/'
    for key in _LOADERS:
        loader = cfg.get(key)
        if not loader:
            continue
        dataset = loader['dataset']
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        dataset['data_root'] = root
    for key in _EVALUATORS:
        evaluators = cfg.get(key)
        if not evaluators:
            continue
        if not isinstance(evaluators, list):
            evaluators = [evaluators]
        for evaluator in evaluators:
            if evaluator.get('ann_file'):
                evaluator['ann_file'] = osp.join(
                    root, 'annotations', osp.basename(evaluator['ann_file'])
                )
    return cfg
