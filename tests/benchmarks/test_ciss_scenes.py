"""Bookkeeping of benchmarks/ciss_scenes.py: finished arms are not rerun or
timed again, trained ones are timed with the load around them, the table
averages the last step over the seeds."""

import json
import os
import os.path as osp

from ..e2e.runs import load_script

ciss_scenes = load_script('benchmarks', 'ciss_scenes.py')


def _finish(arm, seed, root, *args, **kwargs):
    path = ciss_scenes.last_metrics(arm, seed, str(root))
    os.makedirs(osp.dirname(path), exist_ok=True)
    metrics = dict(mIoU_old=60.0, mIoU_new=20.0 + seed, mIoU_all=40.0, hIoU=30.0)
    with open(path, 'w') as f:
        json.dump(metrics, f)


def test_finished_arm_is_neither_rerun_nor_timed(tmp_path, monkeypatch):
    _finish('dkd', 0, tmp_path)

    def fail(*args):
        raise AssertionError('a finished arm was run again')

    monkeypatch.setattr(ciss_scenes, 'run_arm', fail)
    ciss_scenes.timed_run('dkd', 0, str(tmp_path))
    assert not (tmp_path / 'runs.json').exists()


def test_trained_arms_are_timed_and_tabled(tmp_path, monkeypatch):
    loads = iter([(1.5, 0, 0), (2.25, 0, 0), (3.0, 0, 0), (0.5, 0, 0)])
    monkeypatch.setattr(ciss_scenes.os, 'getloadavg', lambda: next(loads))
    monkeypatch.setattr(ciss_scenes, 'run_arm', _finish)
    ciss_scenes.timed_run('dkd', 0, str(tmp_path))
    ciss_scenes.timed_run('dkd', 1, str(tmp_path))
    runs = json.loads((tmp_path / 'runs.json').read_text())
    assert [(r['seed'], r['load_before'], r['load_after']) for r in runs] == [
        (0, 1.5, 2.25),
        (1, 3.0, 0.5),
    ]
    (tmp_path / 'seed0.log').write_text('a log beside the seed folders\n')
    table = ciss_scenes.summarise(str(tmp_path), ['dkd', 'joint'])
    # new mIoU 20 and 21 over the two seeds: mean 20.5, std 0.5
    assert '| dkd | 2 | 60.0 ± 0.0 | 20.5 ± 0.5 | 40.0 ± 0.0 | 30.0 ± 0.0 |' in table
    assert 'joint' not in table
    assert '| 1 | dkd | 0.0 | 3.00 | 0.50 |' in table


def test_step0_from_and_incremental_options_reach_every_arm(tmp_path, monkeypatch):
    """--step0-from ROOT: DKD-family arms copy ROOT/seed<s>/dkd, MiB
    ROOT/seed<s>/mib; --incremental-options come before the arm's own."""
    commands = []
    monkeypatch.setattr(
        ciss_scenes.subprocess, 'run', lambda cmd, **kw: commands.append(cmd)
    )
    for arm in ('dkd', 'mib', 'bce_kd'):
        _finish(arm, 1, tmp_path)
        ciss_scenes.run_arm(arm, 1, str(tmp_path), 'cache', ['a=1'])
    sources = [c[c.index('--step0-from') + 1] for c in commands]
    assert sources == [
        osp.join('cache', 'seed1', 'dkd'),
        osp.join('cache', 'seed1', 'mib'),
        osp.join('cache', 'seed1', 'dkd'),
    ]
    options = [c[c.index('--incremental-options') + 1 :] for c in commands]
    assert options[0] == options[1] == ['a=1']
    assert options[2][:2] == ['a=1', 'model.loss_weights.dkd_pos=0']
    commands.clear()
    ciss_scenes.run_arm('dkd', 1, str(tmp_path))  # its own step 0, no options
    assert '--step0-from' not in commands[0]
    assert '--incremental-options' not in commands[0]


def test_split_sets_the_last_step_and_reaches_every_arm(tmp_path, monkeypatch):
    """--split 4-1x6: the last step is step 6, every arm's tools/ciss.py gets
    the split, joint training scores old / new on its 4 step-0 classes."""
    assert ciss_scenes.last_metrics('dkd', 0, 'r', '4-1x6') == osp.join(
        'r', 'seed0', 'dkd', 'step6', 'metrics.json'
    )
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        if 'train.py' in cmd[1]:  # joint: mmseg's tools/train.py logs a validation
            logs = osp.join(cmd[cmd.index('--work-dir') + 1], 'run', 'vis_data')
            os.makedirs(logs)
            with open(osp.join(logs, 'scalars.json'), 'w') as f:
                json.dump({k: 1.0 for k in ciss_scenes.KEYS}, f)

    monkeypatch.setattr(ciss_scenes.subprocess, 'run', fake_run)
    _finish('mib', 0, tmp_path)
    ciss_scenes.run_arm('mib', 0, str(tmp_path), split='4-1x6')
    assert commands[0][commands[0].index('--split') + 1] == '4-1x6'
    ciss_scenes.run_arm('joint', 0, str(tmp_path), split='4-1x6')
    assert commands[1][-2:] == [
        'val_evaluator.num_base_classes=4',
        'test_evaluator.num_base_classes=4',
    ]


def test_joint_options_reach_joint_training_only(tmp_path, monkeypatch):
    """--joint-options (e.g. a schedule as long as the sequence) end joint
    training's cfg-options; the incremental arms do not get them."""
    commands = []

    def fake_run(cmd, **kwargs):
        commands.append(cmd)
        if 'train.py' in cmd[1]:
            logs = osp.join(cmd[cmd.index('--work-dir') + 1], 'run', 'vis_data')
            os.makedirs(logs)
            with open(osp.join(logs, 'scalars.json'), 'w') as f:
                json.dump({k: 1.0 for k in ciss_scenes.KEYS}, f)

    monkeypatch.setattr(ciss_scenes.subprocess, 'run', fake_run)
    long = ['train_cfg.max_iters=14000', 'param_scheduler.1.end=14000']
    ciss_scenes.timed_run('joint', 2, str(tmp_path), joint_extra=long)
    _finish('dkd', 2, tmp_path)  # the last step's metrics the arm returns
    ciss_scenes.run_arm('dkd', 2, str(tmp_path), joint_extra=long)
    joint, dkd = commands
    assert joint[joint.index('--cfg-options') + 1 :] == [
        'randomness.seed=2',
        'val_evaluator.num_base_classes=6',
        'test_evaluator.num_base_classes=6',
        *long,
    ]
    assert not any('14000' in part for part in dkd)
