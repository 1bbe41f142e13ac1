"""Short real runs: RankMixup training with the calibration metric and
diagrams, the temperature tool applied at test time, and the composition with
distillation and quantization (configs of configs/calibrate/mmpretrain)."""

import json
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

import mmcompress.calibrate  # noqa: F401  (registers the components)
from mmcompress.testing import shorten_schedule, shrink_data

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'calibrate', 'mmpretrain')


def small_config(name, work_dir, train_size=256, epochs=2, **overrides):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.work_dir = str(work_dir)
    shrink_data(cfg, subset_size=dict(train=train_size, val=200, test=200))
    cfg.train_dataloader.batch_size = 32
    shorten_schedule(cfg, epochs=epochs, log_interval=1, param_scheduler=[])
    cfg.optim_wrapper.optimizer.lr = 0.02
    cfg.merge_from_dict(overrides)
    return cfg


def run_temperature_tool(config, checkpoint, work_dir, *options):
    """Run tools/calibrate_temperature.py on 200-image val/test splits and
    return its temperature.json."""
    argv = sys.argv
    sys.argv = [
        'calibrate_temperature.py',
        osp.join(CONFIGS, config),
        checkpoint,
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        'val_dataloader.dataset.subset_size=200',
        'test_dataloader.dataset.subset_size=200',
        'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        *options,
    ]
    try:
        runpy.run_path(
            osp.join(ROOT, 'tools', 'calibrate_temperature.py'), run_name='__main__'
        )
    finally:
        sys.argv = argv
    with open(osp.join(work_dir, 'temperature.json')) as f:
        return json.load(f)


@pytest.mark.slow
def test_rankmixup_training_metric_diagram_and_temperature_tool(
    tmp_path, deterministic
):
    cfg = small_config(
        'rankmixup-mrl_resnet18-w8_fmnist.py',
        tmp_path / 'train',
        train_size=512,
        epochs=3,
    )
    runner = Runner.from_cfg(cfg)
    runner.train()
    # the margin-2 hinge of MRL is logged every iteration, finite, and active
    rank = runner.message_hub.get_scalar('train/loss_rank').data[0]
    assert len(rank) == runner.train_loop.max_iters
    assert np.isfinite(rank).all() and (rank > 0).any(), rank
    metrics = runner.val_loop.run()
    # twice chance (10 %) after 48 iterations on real data (seeded run: 26 %)
    assert metrics['accuracy/top1'] > 20
    assert metrics['calibration/accuracy'] == pytest.approx(
        metrics['accuracy/top1'], abs=1e-6
    )
    assert 0 <= metrics['calibration/ece'] <= 100
    pngs = list(
        (tmp_path / 'train').glob(
            '*/vis_data/vis_image/calibration_reliability_val_3.png'
        )
    )
    assert len(pngs) == 1

    checkpoint = str(tmp_path / 'train' / 'epoch_3.pth')
    fitted = run_temperature_tool(
        'rankmixup-mrl_resnet18-w8_fmnist.py', checkpoint, tmp_path / 'ts'
    )
    assert fitted['module'] == 'head'
    assert fitted['temperature'] > 0
    val = fitted['metrics']['val']
    assert val['after']['nll'] <= val['before']['nll'] + 1e-6
    assert val['after']['accuracy'] == val['before']['accuracy']
    assert osp.isfile(tmp_path / 'ts' / 'reliability_test_after.png')

    # the written config applies the temperature at test time
    calibrated = Config.fromfile(
        str(tmp_path / 'ts' / 'rankmixup-mrl_resnet18-w8_fmnist_temperature.py')
    )
    assert calibrated.custom_hooks[-1]['type'] == 'TemperatureScalingHook'
    calibrated.work_dir = str(tmp_path / 'test')
    calibrated.load_from = checkpoint
    test_metrics = Runner.from_cfg(calibrated).test()
    assert test_metrics['calibration/ece'] == pytest.approx(
        fitted['metrics']['test']['after']['ece'], abs=1e-3
    )
    assert test_metrics['calibration/nll'] == pytest.approx(
        fitted['metrics']['test']['after']['nll'], abs=1e-4
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    'config, overrides',
    [
        ('rankmixup-mrl_kd_fmnist.py', {'model.teacher.checkpoint': None}),
        ('rankmixup-mrl_lsq-w4a4_fmnist.py', {'load_from': None}),
    ],
)
def test_calibration_composes_with_distill_and_quant(tmp_path, config, overrides):
    cfg = small_config(config, tmp_path, train_size=64, epochs=1, **overrides)
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = {
        key for key in runner.message_hub.log_scalars if key.startswith('train/loss')
    }
    expected = {'train/loss_rank'} | (
        {'train/loss_distill_kd'} if 'kd' in config else set()
    )
    assert expected <= losses, losses
    for key in expected:
        values = runner.message_hub.get_scalar(key).data[0]
        assert np.isfinite(values).all() and (values > 0).any(), (key, values)
    metrics = runner.val_loop.run()
    for key in ('calibration/ece', 'calibration/aece'):
        assert 0 < metrics[key] < 100, metrics
    assert (
        len(
            list(
                tmp_path.glob('*/vis_data/vis_image/calibration_reliability_val_1.png')
            )
        )
        == 1
    )
    if 'kd' not in config:
        return
    # temperature scaling of a DistillModel calibrates its student's head
    fitted = run_temperature_tool(
        config,
        str(tmp_path / 'epoch_1.pth'),
        tmp_path / 'ts',
        'model.teacher.checkpoint=None',
    )
    assert fitted['module'] == 'student.head'
    calibrated = Config.fromfile(
        str(tmp_path / 'ts' / 'rankmixup-mrl_kd_fmnist_temperature.py')
    )
    assert calibrated.custom_hooks[-1]['module'] == 'student.head'
    calibrated.work_dir = str(tmp_path / 'test')
    calibrated.load_from = str(tmp_path / 'epoch_1.pth')
    test_metrics = Runner.from_cfg(calibrated).test()
    assert test_metrics['calibration/ece'] == pytest.approx(
        fitted['metrics']['test']['after']['ece'], abs=1e-3
    )
