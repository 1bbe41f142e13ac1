"""Bad distillation configs: each test is one user mistake and the message it
gets (see ``tests/bad_input/table.py`` for the docstring convention)."""

import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

DISTILL_TESTS = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'distill')
sys.path.insert(0, DISTILL_TESTS)
from toy_models import ToyClassifier, write_config_tree  # noqa: E402

from mmcompress.distill import DistillModel  # noqa: E402


def _build(student=None, teacher=None, distill=None, **kwargs):
    torch.manual_seed(0)
    return DistillModel(
        student=student or dict(type=ToyClassifier),
        teacher=teacher
        or dict(config=dict(type=ToyClassifier, widths=(16, 32)), checkpoint=None),
        distill=distill
        or dict(
            kd=dict(
                student='head.fc', teacher='head.fc', loss=dict(type='VanillaKDLoss')
            )
        ),
        **kwargs,
    )


def test_student_config_path_that_does_not_exist(tmp_path, monkeypatch):
    """A relative student config path found neither next to the config nor in the cwd.

    Message: student config file './models/studnet.py' not found: tried
    """
    pytest.importorskip('mmpretrain')
    config = write_config_tree(tmp_path)
    text = open(config).read().replace('./models/student.py', './models/studnet.py')
    open(config, 'w').write(text)
    monkeypatch.chdir(tmp_path)
    folder = osp.dirname(config)
    with pytest.raises(FileNotFoundError) as info:
        Runner.from_cfg(Config.fromfile(config))
    message = str(info.value)
    assert "student config file './models/studnet.py' not found: tried" in message
    # names the path tried and the base folder
    assert osp.join(folder, 'models', 'studnet.py') in message
    assert f"relative to the config file's folder {folder}" in message


def test_teacher_config_path_missing_outside_a_runner(tmp_path, monkeypatch):
    """A relative teacher config path that does not exist, model built without a Runner.

    Message: relative paths resolve against the working directory
    """
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match=r"teacher 'teacher' config file 'teacher\.py' "
        r'not found: tried .*relative paths resolve against '
        r'the working directory',
    ):
        _build(
            teacher=dict(config='teacher.py', checkpoint=None), input_shape=(1, 8, 8)
        )


def test_model_zoo_config_name_with_a_typo():
    """A model-zoo teacher config name that the package does not have.

    Message: is not a config of mmpretrain (looked in
    """
    pytest.importorskip('mmpretrain')
    with pytest.raises(
        FileNotFoundError,
        match=r"'mmpretrain::resnet/resnet19_8xb32_in1k.py' "
        r'is not a config of mmpretrain \(looked in .*configs',
    ):
        _build(
            teacher=dict(
                config='mmpretrain::resnet/resnet19_8xb32_in1k.py', checkpoint=None
            )
        )


def test_model_zoo_config_of_a_package_not_installed():
    """A model-zoo config of a downstream package that is not installed.

    Message: package 'mmnotthere' is not installed
    """
    with pytest.raises(
        FileNotFoundError, match="package 'mmnotthere' is not installed"
    ):
        _build(teacher=dict(config='mmnotthere::a/b.py', checkpoint=None))


@pytest.mark.parametrize(
    'loss',
    [
        dict(type='VanillaKDLoss', tau=4.0),
        dict(type='DecoupledKDLoss'),
        dict(type='DISTLoss'),
    ],
)
def test_kd_between_models_with_other_class_counts(loss):
    """KD of a 10-class student from a 20-class teacher (KD, DKD or DIST).

    Message: 10 vs 20 classes (dim 1); no adapter may map one set of classes
    """
    with pytest.raises(
        ValueError,
        match=r"Distill entry 'kd' tensor 0: \w+Loss compares class "
        r'distributions, but the student records shape \(2, 10\) and the '
        r'teacher \(2, 20\): 10 vs 20 classes \(dim 1\); no adapter may '
        r'map one set of classes onto another\. Distill from a teacher '
        r'trained on the same classes',
    ):
        _build(
            student=dict(type=ToyClassifier, num_classes=10),
            teacher=dict(
                config=dict(type=ToyClassifier, widths=(16, 32), num_classes=20),
                checkpoint=None,
            ),
            distill=dict(kd=dict(student='head.fc', teacher='head.fc', loss=loss)),
            input_shape=(1, 8, 8),
        )


def test_kd_of_logits_against_feature_maps():
    """A KD loss between student logits and teacher feature maps.

    Message: tensors of different kinds (rank 2 vs 4, e.g. logits against features)
    """
    with pytest.raises(
        ValueError,
        match=r'student records shape \(2, 4\) and the teacher '
        r'\(2, 32, 4, 4\): tensors of different kinds \(rank 2 '
        r'vs 4, e.g. logits against features\)\. Record the '
        r'logits on both sides',
    ):
        _build(
            distill=dict(
                kd=dict(
                    student='head.fc',
                    teacher='backbone.stage2',
                    loss=dict(type='VanillaKDLoss'),
                )
            ),
            input_shape=(1, 8, 8),
        )


def test_kd_of_logits_against_pooled_features():
    """KD between student logits and the teacher's pooled features (its fc input).

    Message: 4 vs 32 classes (dim 1)
    """
    with pytest.raises(
        ValueError,
        match=r'\(2, 4\) and the teacher '
        r'\(2, 32\): 4 vs 32 classes \(dim 1\)',
    ):
        _build(
            distill=dict(
                kd=dict(
                    student='head.fc',
                    teacher=dict(module='head.fc', io='input'),
                    loss=dict(type='VanillaKDLoss'),
                )
            ),
            input_shape=(1, 8, 8),
        )


def test_input_shape_that_is_not_a_shape():
    """`input_shape=224` (a size instead of the per-sample shape).

    Message: input_shape must be the per-sample input shape as positive ints
    """
    with pytest.raises(
        ValueError,
        match=r'input_shape must be the per-sample input shape '
        r'as positive ints .* got 224\.',
    ):
        _build(input_shape=224)


def test_input_shape_the_model_cannot_take():
    """`input_shape` with a channel count the models do not take.

    Message: dry forward of the teacher 'teacher' failed on a random batch of
    """
    with pytest.raises(
        RuntimeError,
        match=r"(?s)dry forward of the teacher 'teacher' failed on "
        r'a random batch of per-sample shape \(3, 8, 8\) from '
        r'input_shape \(RuntimeError: .*Set `input_shape`',
    ):
        _build(input_shape=(3, 8, 8))
