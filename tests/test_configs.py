"""Every config in configs/ is a downstream config that the stock tools run.

Static checks for all configs (fast), and a short run of each through the stock
``tools/train.py`` that ships inside its downstream package (slow): the first
config of each capability folder and downstream in a fresh interpreter (as a
user runs it), the others in the test process (the same script, without the
import cost that dominates a 2-iteration run).
"""

import functools
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from mmcompress.datasets.scenes import point_config_at_scenes
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool

from .e2e.runs import REPO, run_tool, run_tool_in_process

SCOPE_PACKAGE = dict(
    mmpretrain='mmpretrain', mmdet='mmdet', mmseg='mmseg', mmpose='mmpose'
)
CONFIGS = sorted(
    osp.relpath(p, REPO)
    for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p
)


@functools.lru_cache(maxsize=None)
def loaded(config: str) -> Config:
    """The parsed config (parsed once: the checks here only read it)."""
    return Config.fromfile(osp.join(REPO, config))


def test_configs_named_in_the_docs_are_collected():
    """Every config the README and docs/ point at is a file collected here (an
    empty or partial glob would make the parametrised checks below vacuous),
    and every capability has configs."""
    named = set()
    for doc in [
        osp.join(REPO, 'README.md'),
        *glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True),
    ]:
        with open(doc) as f:
            # code comments hold illustrative paths (``# configs/my_kd/kd.py``)
            text = '\n'.join(line.split('# ')[0] for line in f)
        named.update(re.findall(r'(?<![\w/])configs/[\w./-]+?\.py\b', text))
    named = {n for n in named if '_base_' not in n}
    assert len(named) >= 10, named
    assert sorted(named - set(CONFIGS)) == []
    for capability in ('baselines', 'distill', 'quant', 'calibrate'):
        assert any(c.startswith(f'configs/{capability}/') for c in CONFIGS), capability


@pytest.mark.parametrize('config', CONFIGS)
def test_config_folder_names_its_scope(config):
    """``configs/<capability>/<scope>/<name>.py``: the folder is the scope
    whose stock tools run the config."""
    scope = config.split('/')[2]
    cfg = loaded(config)
    assert cfg.get('default_scope') == scope, (
        f'{config} is in the {scope} folder but has '
        f'default_scope={cfg.get("default_scope")!r}'
    )


MACHINE_PATHS = ('/work/', '/root/', '/home/', '/tmp/', 'site-packages', '.venv/')


@pytest.mark.parametrize(
    'path',
    sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)),
    ids=lambda p: osp.relpath(p, REPO),
)
def test_config_names_no_machine_specific_path(path):
    with open(path) as f:
        text = f.read()
    found = [m for m in MACHINE_PATHS if m in text]
    assert not found, (
        f'{osp.relpath(path, REPO)} names machine-specific paths {found}: '
        'write repository-relative paths (tools/train.py, work_dirs/...)'
    )


@pytest.mark.parametrize('config', CONFIGS)
def test_config_declares_scope_and_custom_imports(config):
    cfg = loaded(config)
    assert cfg.get('default_scope') in SCOPE_PACKAGE, (
        f'{config}: default_scope must be one of {sorted(SCOPE_PACKAGE)} so the '
        f'stock downstream tools resolve its names'
    )
    imports = cfg.get('custom_imports', {}).get('imports', [])
    assert 'mmcompress' in imports, f'{config}: custom_imports lacks mmcompress'
    assert cfg.custom_imports.get('allow_failed_imports') is False
    assert 'model' in cfg and 'train_dataloader' in cfg


def _named_checkpoints(cfg):
    """Teacher checkpoints and ``load_from`` of a config under ``work_dirs/``."""
    paths = []
    if cfg.model.get('type') == 'DistillModel':
        teachers = (
            [cfg.model.teacher]
            if cfg.model.get('teacher')
            else list(cfg.model.teachers.values())
        )
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
    cfg = loaded(config)
    for path in _named_checkpoints(cfg):
        run_name, file_name = path.split('/')[1:3]
        assert run_name in CONFIG_BY_NAME, (
            f'{config} names {path}, but no config is called {run_name}.py'
        )
        source = loaded(CONFIG_BY_NAME[run_name])
        unit = 'iter' if source.train_cfg.get('max_iters') else 'epoch'
        last = source.train_cfg.get(f'max_{unit}s')
        # a DistillModel run also writes the plain student next to it
        student = source.model.get('type') == 'DistillModel'
        assert file_name == f'{unit}_{last}.pth' or (
            student and file_name == f'{unit}_{last}_student.pth'
        ), (
            f'{config} names {path}, but {CONFIG_BY_NAME[run_name]} ends '
            f'with {unit}_{last}.pth'
        )


SCENE_TASKS = dict(
    FashionSceneDetDataset='det',
    FashionSceneSegDataset='seg',
    FashionScenePoseDataset='pose',
)


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
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # wrappers (IncrementalSegDataset...)
        dataset = dataset.dataset
    task = SCENE_TASKS.get(dataset.type)
    if task is not None:
        point_config_at_scenes(cfg, osp.join(scenes_root, task))
    if cfg.model.get('type') == 'DistillModel':
        for teacher in (
            [cfg.model.teacher]
            if cfg.model.get('teacher')
            else cfg.model.teachers.values()
        ):
            teacher.checkpoint = None
    if cfg.get('load_from') and not osp.isfile(osp.join(REPO, cfg.load_from)):
        cfg.load_from = None
    shorten_schedule(cfg, iters=2, log_interval=1, param_scheduler=[])
    shrink_data(cfg, batch_size=2, subset_size=8)
    cfg.work_dir = work_dir
    path = osp.join(work_dir, osp.basename(config))
    cfg.dump(path)
    return path


# Model-zoo recipes for GPU clusters (full COCO or Cityscapes, ImageNet-pretrained
# backbones, named ``*_coco.py`` / ``*_cityscapes.py``) cannot run offline on a
# CPU: they are not trained here; tests/distill and tests/models check that they
# build.
CLUSTER_DATASETS = dict(_coco='CocoDataset', _cityscapes='CityscapesDataset')
CLUSTER_RECIPES = [c for c in CONFIGS if c[:-3].endswith(tuple(CLUSTER_DATASETS))]
# Domain-adaptation recipes (configs/adapt/) need a source and a target domain:
# tests/adapt runs the scenes one with the stock tools and builds the others.
# Class-incremental VOC / ADE20K recipes (configs/incremental/, *_voc-* /
# *_ade20k-*): tests/incremental builds them.
RUNNABLE_CONFIGS = [
    c
    for c in CONFIGS
    if c not in CLUSTER_RECIPES
    and not c.startswith('configs/adapt/')
    and not any(t in osp.basename(c) for t in ('_voc-', '_ade20k-'))
]


def test_cluster_recipes_are_coco_configs():
    """Only full-COCO / Cityscapes recipes are exempt from the stock-tool run."""
    for config in CLUSTER_RECIPES:
        cfg = loaded(config)
        suffix = '_' + config[:-3].rsplit('_', 1)[1]
        assert cfg.train_dataloader.dataset.type == CLUSTER_DATASETS[suffix], config
    for config in RUNNABLE_CONFIGS:
        cfg = loaded(config)
        assert cfg.train_dataloader.dataset.type not in CLUSTER_DATASETS.values(), (
            f'{config} trains on COCO or Cityscapes: name it *_coco.py / '
            '*_cityscapes.py (a GPU-cluster recipe) or point it at data that '
            'installs here'
        )


def _group(config: str) -> tuple:
    """(capability folder, downstream) of ``configs/<capability>/<scope>/x.py``."""
    return tuple(config.split('/')[1:3])


# The first runnable config of each group also runs in a fresh interpreter.
FRESH_INTERPRETER = {
    next(c for c in RUNNABLE_CONFIGS if _group(c) == group)
    for group in {_group(c) for c in RUNNABLE_CONFIGS}
}


@pytest.mark.slow
@pytest.mark.parametrize('config', RUNNABLE_CONFIGS)
def test_config_trains_with_stock_tool(config, tmp_path, scenes_root):
    cfg = loaded(config)
    scope = cfg.default_scope
    tiny = tiny_run_config(config, str(tmp_path), scenes_root)
    tool = stock_tool(SCOPE_PACKAGE[scope])
    args = [tiny, '--work-dir', str(tmp_path)]
    if config in FRESH_INTERPRETER:
        run_tool(tool, args)
    else:
        run_tool_in_process(tool, args, scope)
    assert osp.isfile(osp.join(tmp_path, 'iter_2.pth'))
