"""Every config in configs/ is a downstream config that the stock tools run.

Static checks for all configs (fast), and a short run of each through the stock
``tools/train.py`` that ships inside its downstream package (slow).
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmcompress.datasets.scenes import point_config_at_scenes

from .e2e.runs import REPO, run_tool, stock_tool

SCOPE_PACKAGE = dict(mmpretrain='mmpretrain', mmdet='mmdet', mmseg='mmseg',
                     mmpose='mmpose')
CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_configs_exist():
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize('config', CONFIGS)
def test_config_declares_scope_and_custom_imports(config):
    cfg = Config.fromfile(osp.join(REPO, config))
    assert cfg.get('default_scope') in SCOPE_PACKAGE, (
        f'{config}: default_scope must be one of {sorted(SCOPE_PACKAGE)} so the '
        f'stock downstream tools resolve its names')
    imports = cfg.get('custom_imports', {}).get('imports', [])
    assert 'mmcompress' in imports, f'{config}: custom_imports lacks mmcompress'
    assert cfg.custom_imports.get('allow_failed_imports') is False
    assert 'model' in cfg and 'train_dataloader' in cfg


def _named_checkpoints(cfg):
    """Teacher checkpoints and ``load_from`` of a config under ``work_dirs/``."""
    paths = []
    if cfg.model.get('type') == 'DistillModel':
        teachers = ([cfg.model.teacher] if cfg.model.get('teacher') else
                    list(cfg.model.teachers.values()))
        paths += [t.checkpoint for t in teachers if t.get('checkpoint')]
    if cfg.get('load_from'):
        paths.append(cfg.load_from)
    return [p for p in paths if p.startswith('work_dirs/')]


CONFIG_BY_NAME = {osp.basename(c)[:-3]: c for c in CONFIGS}


@pytest.mark.parametrize('config', CONFIGS)
def test_named_checkpoints_are_what_their_recipe_writes(config):
    """``work_dirs/<name>/iter_N.pth`` (or ``epoch_N``) must be the last
    checkpoint the stock tool writes for config ``<name>`` (default work dir
    ``work_dirs/<config name>``, N = its max_iters / max_epochs)."""
    cfg = Config.fromfile(osp.join(REPO, config))
    for path in _named_checkpoints(cfg):
        run_name, file_name = path.split('/')[1:3]
        assert run_name in CONFIG_BY_NAME, (
            f'{config} names {path}, but no config is called {run_name}.py')
        source = Config.fromfile(osp.join(REPO, CONFIG_BY_NAME[run_name]))
        unit = 'iter' if source.train_cfg.get('max_iters') else 'epoch'
        last = source.train_cfg.get(f'max_{unit}s')
        assert file_name == f'{unit}_{last}.pth', (
            f'{config} names {path}, but {CONFIG_BY_NAME[run_name]} ends '
            f'with {unit}_{last}.pth')


def _shrink_loader(loader, size):
    loader.batch_size = 2
    loader.num_workers = 0
    loader.persistent_workers = False
    dataset = loader.dataset
    while 'dataset' in dataset and dataset.type in ('RepeatDataset',
                                                    'ClassBalancedDataset'):
        dataset = dataset.dataset
    if dataset.type == 'FashionMNISTDataset':
        dataset.subset_size = size


SCENE_TASKS = dict(FashionSceneDetDataset='det', FashionSceneSegDataset='seg',
                   FashionScenePoseDataset='pose')


@pytest.fixture(scope='session')
def scenes_root(tmp_path_factory):
    """Small real-image scenes for every task, generated once per session."""
    from mmcompress.datasets.scenes import generate_scenes
    root = tmp_path_factory.mktemp('scenes')
    for task in SCENE_TASKS.values():
        generate_scenes(task, str(root / task), split='small')
    return str(root)


def tiny_run_config(config: str, work_dir: str, scenes_root: str) -> str:
    """Write a copy of ``config`` that trains 2 iterations and validates once.

    Teachers start from random weights and a missing ``load_from`` (a float
    checkpoint the recipe trains first) is dropped: this run checks that the
    config builds, trains, evaluates and saves with the stock tool.
    """
    cfg = Config.fromfile(osp.join(REPO, config))
    task = SCENE_TASKS.get(cfg.train_dataloader.dataset.type)
    if task is not None:
        point_config_at_scenes(cfg, osp.join(scenes_root, task))
    if cfg.model.get('type') == 'DistillModel':
        for teacher in ([cfg.model.teacher] if cfg.model.get('teacher')
                        else cfg.model.teachers.values()):
            teacher.checkpoint = None
    if cfg.get('load_from') and not osp.isfile(osp.join(REPO, cfg.load_from)):
        cfg.load_from = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    _shrink_loader(cfg.train_dataloader, 8)
    for key in ('val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            _shrink_loader(cfg[key], 8)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.work_dir = work_dir
    path = osp.join(work_dir, osp.basename(config))
    cfg.dump(path)
    return path


# Model-zoo recipes for GPU clusters (full COCO, ImageNet-pretrained
# backbones, named ``*_coco.py``) cannot run offline on a CPU: they are not
# trained here; tests/distill and tests/models check that they build.
CLUSTER_RECIPES = [c for c in CONFIGS if c.endswith('_coco.py')]
RUNNABLE_CONFIGS = [c for c in CONFIGS if c not in CLUSTER_RECIPES]


def test_cluster_recipes_are_coco_configs():
    """Only full-COCO recipes are exempt from the stock-tool run."""
    for config in CLUSTER_RECIPES:
        cfg = Config.fromfile(osp.join(REPO, config))
        assert cfg.train_dataloader.dataset.type == 'CocoDataset', config
    for config in RUNNABLE_CONFIGS:
        cfg = Config.fromfile(osp.join(REPO, config))
        assert cfg.train_dataloader.dataset.type != 'CocoDataset', (
            f'{config} trains on COCO: name it *_coco.py (a GPU-cluster '
            'recipe) or point it at data that installs here')


@pytest.mark.slow
@pytest.mark.parametrize('config', RUNNABLE_CONFIGS)
def test_config_trains_with_stock_tool(config, tmp_path, scenes_root):
    cfg = Config.fromfile(osp.join(REPO, config))
    scope = cfg.default_scope
    tiny = tiny_run_config(config, str(tmp_path), scenes_root)
    run_tool(stock_tool(SCOPE_PACKAGE[scope]), [tiny, '--work-dir', str(tmp_path)])
    assert osp.isfile(osp.join(tmp_path, 'iter_2.pth'))
