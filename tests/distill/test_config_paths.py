"""Student/teacher ``config`` paths resolve like ``_base_`` (against the
folder of the config file the Runner was made from) and accept model-zoo
names (mmcompress.distill.teacher, mmcompress.utils.runner)."""

import os.path as osp
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

pytest.importorskip('mmpretrain')
sys.path.insert(0, str(Path(__file__).parent))
from toy_models import write_config_tree  # noqa: E402

from mmcompress.distill import DistillModel, StudentCheckpointHook  # noqa: E402
from mmcompress.distill.teacher import (
    load_model_config,  # noqa: E402
    resolve_config_path,
)
from mmcompress.utils.runner import (
    config_folder,  # noqa: E402
    current_config_folder,
)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    config = write_config_tree(tmp_path)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the config's folder
    runner = Runner.from_cfg(Config.fromfile(config))
    model = runner.model
    assert isinstance(model, DistillModel)
    assert model.student.head.fc.out_features == 10
    assert model.teachers['teacher'].head.fc.out_features == 10
    assert current_config_folder() is None  # only while building
    assert sum(isinstance(h, StudentCheckpointHook) for h in runner.hooks) == 1


def test_outside_a_runner_the_folder_is_set_explicitly(tmp_path, monkeypatch):
    config = write_config_tree(tmp_path)
    folder = osp.dirname(config)
    with config_folder(folder):
        assert current_config_folder() == folder
        assert resolve_config_path('./models/student.py', 'student') == osp.join(
            folder, 'models', 'student.py'
        )
    assert current_config_folder() is None
    monkeypatch.chdir(folder)  # relative to the working directory
    assert resolve_config_path('teacher.py', 'teacher') == osp.join(
        folder, 'teacher.py'
    )


def test_a_path_found_only_in_the_working_directory_warns(tmp_path, monkeypatch):
    config = write_config_tree(tmp_path)
    logs = []
    monkeypatch.setattr(
        'mmcompress.distill.teacher.print_log',
        lambda msg, **kwargs: logs.append((msg, kwargs.get('level'))),
    )
    monkeypatch.chdir(osp.dirname(config))
    with config_folder(str(tmp_path)):
        path = resolve_config_path('teacher.py', 'teacher')
    assert path == osp.join(osp.dirname(config), 'teacher.py')
    assert len(logs) == 1 and logs[0][1] == 30
    assert "resolve against the config file's folder like `_base_`" in logs[0][0]


def test_model_zoo_names_for_teacher_and_student():
    name = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
    model_cfg, scope = load_model_config(name, 'teacher')
    assert scope == 'mmpretrain'
    assert (model_cfg.type, model_cfg.backbone.depth, model_cfg.head.num_classes) == (
        'ImageClassifier',
        18,
        1000,
    )
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = DistillModel(
            student=dict(config=name),
            teacher=dict(config=name, checkpoint=None),
            distill=dict(
                kd=dict(
                    student='head.fc',
                    teacher='head.fc',
                    loss=dict(type='VanillaKDLoss'),
                )
            ),
            input_shape=(3, 32, 32),
        )
    assert model.student.head.fc.out_features == 1000
    assert type(model.teachers['teacher'].backbone).__name__ == 'ResNet'
