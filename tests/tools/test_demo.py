"""tools/demo.py: which stages run with and without the converged checkpoints."""

import json
import os.path as osp

import pytest

from ..e2e.runs import REPO, load_script


@pytest.fixture(scope='module')
def demo():
    return load_script('tools', 'demo.py')


def _finish(root, work_dir, config, write_checkpoint=True):
    """Write what benchmarks/fmnist_converged.py leaves after a finished run."""
    folder = root / work_dir
    folder.mkdir(parents=True)
    checkpoint = f'{work_dir}/epoch_15.pth'
    if write_checkpoint:
        (root / checkpoint).write_bytes(b'weights')
    result = dict(config=config, checkpoint=checkpoint, top1=92.0)
    (folder / 'result.json').write_text(json.dumps(result))


def test_converged_checkpoints_need_both_finished_runs(demo, tmp_path):
    assert demo.converged_checkpoints(str(tmp_path)) is None
    _finish(tmp_path, demo.CONVERGED['teacher'], 'teacher.py')
    # the student has not finished: the demo trains short versions of both
    assert demo.converged_checkpoints(str(tmp_path)) is None
    _finish(tmp_path, demo.CONVERGED['student'], 'student.py', write_checkpoint=False)
    # a result whose checkpoint was deleted does not count either
    assert demo.converged_checkpoints(str(tmp_path)) is None
    (tmp_path / demo.CONVERGED['student'] / 'epoch_15.pth').write_bytes(b'w')
    assert demo.converged_checkpoints(str(tmp_path)) == dict(
        teacher=('teacher.py', demo.CONVERGED['teacher'] + '/epoch_15.pth'),
        student=('student.py', demo.CONVERGED['student'] + '/epoch_15.pth'),
    )


def test_short_plan_trains_every_stage(demo):
    stages = demo.plan(None)
    assert [s.name for s in stages] == [
        'teacher',
        'student',
        'student + KD',
        'student W4A4',
        'student + RankMixup',
    ]
    assert all(s.checkpoint is None for s in stages)
    by_name = {s.name: s for s in stages}
    assert by_name['student + KD'].teacher == 'teacher'
    assert by_name['student W4A4'].init == 'student'
    assert by_name['student W4A4'].qat


def test_converged_plan_tests_the_cached_models_and_keeps_a_budget_reference(demo):
    converged = dict(
        teacher=(demo.CONVERGED['teacher'] + '.py', 'work_dirs/t/epoch_15.pth'),
        student=(demo.CONVERGED['student'] + '.py', 'work_dirs/s/epoch_15.pth'),
    )
    stages = demo.plan(converged)
    by_name = {s.name: s for s in stages}
    assert by_name['teacher'].checkpoint == 'work_dirs/t/epoch_15.pth'
    assert by_name['student'].checkpoint == 'work_dirs/s/epoch_15.pth'
    assert 'converged' in by_name['teacher'].what
    # KD distills from the converged teacher, QAT starts from the converged
    # student; the KD and RankMixup rows are compared with a CE student trained
    # at the same (demo) budget, not with the converged one
    assert by_name['student + KD'].teacher == 'teacher'
    assert by_name['student W4A4'].init == 'student'
    reference = by_name['student, demo budget']
    assert reference.checkpoint is None and reference.config == demo.STUDENT
    names = [s.name for s in stages]
    assert names.index('student, demo budget') < names.index('student + KD')


@pytest.mark.parametrize('converged', [False, True])
def test_every_stage_config_exists(demo, converged):
    found = (
        dict(
            teacher=('configs/baselines/mmpretrain/teacher_r18-w16_fmnist55k.py', ''),
            student=('configs/baselines/mmpretrain/student_r18-w8_fmnist55k.py', ''),
        )
        if converged
        else None
    )
    for stage in demo.plan(found):
        assert osp.isfile(osp.join(REPO, stage.config)), stage.config
