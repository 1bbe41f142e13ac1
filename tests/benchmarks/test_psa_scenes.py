"""Bookkeeping of benchmarks/psa_scenes.py: the reproduce commands name the arms
when seeds differ between arms, the table shows the load around the runs,
``--arms`` outside the tasks and a stage 2 without its stage 1 are refused."""

import pytest

from ..e2e.runs import load_script

psa_scenes = load_script('benchmarks', 'psa_scenes.py')
ARMS = dict(psa_scenes.TASKS['kd'][2])


def _record(arm, seed, value, load=None):
    record = dict(task='kd', arm=arm, config=ARMS[arm], seed=seed, value=value)
    record.update(metric='coco/AP', train_min=10.0, iters=300)
    if load is not None:
        record['load'] = load
    return record


def test_commands_name_the_arms_of_each_set_of_seeds():
    records = [
        _record(arm, seed, 50.0)
        for seed in (0, 1, 2)
        for arm in ('student alone', 'heatmap KD (MSE)')
    ] + [_record('CWD on heatmaps', 0, 52.0)]
    assert psa_scenes.reproduce_commands(records) == [
        'python benchmarks/psa_scenes.py --tasks kd --seeds 0 1 2 '
        "--arms 'student alone' 'heatmap KD (MSE)'",
        "python benchmarks/psa_scenes.py --tasks kd --seeds 0 --arms 'CWD on heatmaps'",
        'python benchmarks/psa_scenes.py --table-only --out docs/models/psa.md',
    ]
    every_arm = [_record(arm, 0, 50.0) for arm in ARMS]
    assert psa_scenes.reproduce_commands(every_arm)[0] == (
        'python benchmarks/psa_scenes.py --tasks kd --seeds 0'
    )


def test_table_gives_the_load_range_and_the_gain():
    records = [
        _record('student alone', 0, 50.0),
        _record('student alone', 1, 54.0),
        _record('heatmap KD (MSE)', 0, 51.0, load=[2.5, 4.0]),
        _record('heatmap KD (MSE)', 1, 53.0, load=[1.5, 3.0]),
        _record('CWD on heatmaps', 1, 55.5),
        _record('DWPose stage 1', 2, 40.0),
    ]
    text = psa_scenes.table(records, ['cmd'])
    # mean 52, sample std of (51, 53) = 1.41; +1 and -1 against the student
    # alone's seeds 0 and 1 (50, 54): +0.0
    assert (
        '| kd | 300 | coco/AP | heatmap KD (MSE) | '
        '`distill/mmpose/heatmap_kd_r18-w32-psa-p_to_w16_scenes.py` | '
        '52.0 ± 1.4 (n=2) | 0: 51.0, 1: 53.0 | +0.0 | 10.0 | 1.5-4.0 |'
    ) in text
    assert '| 52.0 ± 2.8 (n=2) | 0: 50.0, 1: 54.0 | +0.0 | 10.0 | - |' in text
    # against the student's seed 1 (54.0), not the mean of its seeds (52.0)
    assert '| 55.5 ± 0.0 (n=1) | 1: 55.5 | +1.5 | 10.0 | - |' in text
    # no seed in common with the student alone
    assert '| 40.0 ± 0.0 (n=1) | 2: 40.0 | - | 10.0 | - |' in text


def test_arms_outside_the_tasks_are_refused(capsys):
    with pytest.raises(SystemExit):
        psa_scenes.main(['--tasks', 'pose', '--arms', 'PSA_p', 'CWD on heatmaps'])
    assert "--arms ['CWD on heatmaps'] are not arms of --tasks ['pose']" in (
        capsys.readouterr().err
    )


def test_stage2_without_its_stage1_student_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(psa_scenes, 'WORK_ROOT', str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'run the arm of .*dwpose-s1-scaled'):
        psa_scenes.run_options('kd', psa_scenes.DWPOSE_S2_SCALED, 1, 300)
