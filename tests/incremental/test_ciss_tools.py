"""tools/ciss.py: step configs, resuming, the table; and a 2-step sequence
through mmseg's stock tools/train.py and tools/test.py (slow)."""

import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from mmcompress.datasets.scenes import generate_scenes, point_config_at_scenes
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool
from tests.e2e.runs import REPO, run_tool

sys.path.insert(0, osp.join(REPO, 'tools'))
import ciss  # noqa: E402

CONFIGS = osp.join(REPO, 'configs', 'incremental', 'mmseg')
FAMILY = osp.join(CONFIGS, 'dkd_fcn_r18-w16_scenes-6-2-2')


def test_step_without_its_own_file_derives_from_the_last_one():
    """Step 3 (e.g. of '6-1-1-1-1') is step 2's file with step=3 and the new
    head's weight-decay key moved to heads.4."""
    cfg = ciss.step_config(FAMILY, 3)
    assert cfg.model.step == 3
    assert cfg.train_dataloader.dataset.step == cfg.val_dataloader.dataset.step == 3
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    heads = {k: v for k, v in keys.items() if k.startswith('classifier.heads.')}
    assert heads == {'classifier.heads.4.': dict(lr_mult=10.0, decay_mult=1.0)}
    assert keys['classifier'] == dict(lr_mult=10.0, decay_mult=0.0)
    assert ciss.step_config(FAMILY, 2).model.step == 2


def test_config_that_is_not_step_zero():
    with pytest.raises(ValueError, match='is not a step-0 config'):
        ciss.family_of(FAMILY + '_step1.py')


def test_finished_steps_are_skipped_and_the_table_written(tmp_path):
    """Every step has its metrics.json: nothing is trained again."""
    for step, values in enumerate([(80, float('nan')), (70, 40), (60, 30)]):
        (tmp_path / f'step{step}').mkdir()
        metrics = dict(
            mIoU_old=values[0], mIoU_new=values[1], mIoU_all=50.0, hIoU=values[1]
        )
        (tmp_path / f'step{step}' / 'metrics.json').write_text(json.dumps(metrics))
    rows = ciss.main([FAMILY + '_step0.py', '--work-dir', str(tmp_path)])
    assert [(r[0], r[1]) for r in rows] == [(0, '1-6'), (1, '7-8'), (2, '9-10')]
    table = (tmp_path / 'ciss_table.md').read_text()
    assert '| 2 | 9-10 | 60.00 | 30.00 | 50.00 | 30.00 |' in table


def tiny_step_config(step, root, work_dir, load_from=None):
    cfg = Config.fromfile(f'{FAMILY}_step{step}.py')
    point_config_at_scenes(cfg, root)
    shorten_schedule(cfg, iters=2, log_interval=1, param_scheduler=[])
    shrink_data(cfg, batch_size=2)
    cfg.load_from = load_from
    cfg.work_dir = work_dir
    os.makedirs(work_dir)
    path = osp.join(work_dir, f'step{step}.py')
    cfg.dump(path)
    return path


@pytest.mark.slow
def test_two_steps_with_the_stock_tools(tmp_path):
    """Step 0 then step 1 (load_from = step 0) by mmseg's tools/train.py; the
    step-1 checkpoint is the plain student, which mmseg's tools/test.py
    evaluates with the step's config."""
    root = str(tmp_path / 'scenes')
    generate_scenes('seg', root, split='small')
    train = stock_tool('mmseg')
    dirs = [str(tmp_path / f'step{s}') for s in (0, 1)]
    step0 = tiny_step_config(0, root, dirs[0])
    run_tool(train, [step0, '--work-dir', dirs[0]])
    first = osp.join(dirs[0], 'iter_2.pth')
    step1 = tiny_step_config(1, root, dirs[1], load_from=first)
    log = run_tool(train, [step1, '--work-dir', dirs[1]]).stdout
    for term in ('loss_mbce', 'loss_kd', 'loss_dkd_pos', 'loss_dkd_neg', 'loss_ac'):
        assert term in log
    state = torch.load(
        osp.join(dirs[1], 'iter_2.pth'), map_location='cpu', weights_only=False
    )
    heads = {
        k.split('.')[2] for k in state['state_dict'] if k.startswith('classifier.')
    }
    assert heads == {'0', '1', '2'}  # auxiliary, step 0, step 1: no teacher copy
    before = torch.load(first, map_location='cpu', weights_only=False)['state_dict']
    assert set(state['state_dict']) - set(before) == {
        'classifier.heads.2.weight',
        'classifier.heads.2.bias',
    }
    test = stock_tool('mmseg', 'test')
    out = run_tool(
        test, [step1, osp.join(dirs[1], 'iter_2.pth'), '--work-dir', dirs[1]]
    )
    assert 'hIoU' in out.stdout and 'mIoU_old' in out.stdout


def test_step0_from_reuses_a_finished_step0(tmp_path, monkeypatch):
    """--step0-from copies the other sequence's step 0 instead of training it;
    step 1 loads the copied checkpoint."""
    source = tmp_path / 'dkd' / 'step0'
    source.mkdir(parents=True)
    (source / 'iter_2000.pth').write_bytes(b'weights')
    (source / 'last_checkpoint').write_text(str(source / 'iter_2000.pth'))
    metrics = dict(mIoU_old=31.7, mIoU_new=float('nan'), mIoU_all=31.7, hIoU=0.0)
    (source / 'metrics.json').write_text(json.dumps(metrics))
    trained = []

    def fake_train(cmd, **kwargs):  # tools/train.py CONFIG --work-dir DIR
        trained.append(Config.fromfile(cmd[2]))
        with open(osp.join(cmd[4], 'last_checkpoint'), 'w') as f:
            f.write(osp.join(cmd[4], 'iter_500.pth'))

    monkeypatch.setattr(ciss.subprocess, 'run', fake_train)
    monkeypatch.setattr(ciss, 'final_metrics', lambda step_dir: metrics)
    work_dir = tmp_path / 'finetune'
    rows = ciss.main(
        [FAMILY + '_step0.py', '--work-dir', str(work_dir), '--step0-from']
        + [str(tmp_path / 'dkd')]
    )
    assert [cfg.model.step for cfg in trained] == [1, 2]
    assert trained[1].load_from == str(work_dir / 'step1' / 'iter_500.pth')
    copied = work_dir / 'step0' / 'iter_2000.pth'
    assert trained[0].load_from == str(copied) and copied.read_bytes() == b'weights'
    assert rows[0][2]['mIoU_all'] == 31.7
