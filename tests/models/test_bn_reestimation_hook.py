"""BNReestimationHook in a real mmengine run: the saved checkpoint holds the
statistics of the final weights over the first training images, refused
setups name the fix."""

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

import mmcompress  # noqa: F401
from mmcompress.models import BNReestimationHook
from mmcompress.testing import shorten_schedule, shrink_data
from mmcompress.utils.batch_norm import recompute_bn_statistics

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# RankMixup with the official own-batch statistics of the mixed forward: the
# running statistics blend raw and mixed batches, the hook replaces them
CONFIG = osp.join(
    REPO, 'configs/calibrate/mmpretrain/rankmixup-mrl_resnet18-w8_fmnist.py'
)


def _cfg(tmp_path, **schedule):
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(tmp_path)
    shrink_data(cfg, batch_size=32, subset_size=dict(train=128, val=64, test=64))
    # deterministic batches: no augmentation, no shuffling
    cfg.train_dataloader.dataset.pipeline = [dict(type='PackInputs')]
    cfg.train_dataloader.sampler.shuffle = False
    cfg.custom_hooks = [dict(type='BNReestimationHook', num_images=64)]
    cfg.randomness = dict(seed=0)
    shorten_schedule(cfg, **schedule)
    return cfg


def test_checkpoint_holds_the_statistics_of_the_first_training_images(tmp_path):
    cfg = _cfg(tmp_path, epochs=1)
    Runner.from_cfg(cfg).train()
    saved = _load_checkpoint(osp.join(tmp_path, 'epoch_1.pth'), map_location='cpu')
    state = saved['state_dict']
    # the same final weights, statistics recomputed on the first 2 batches
    init_default_scope('mmpretrain')
    runner = Runner.from_cfg(_cfg(tmp_path / 'reference', epochs=1))
    model = runner.model
    model.load_state_dict(state)
    loader = runner.train_dataloader
    batches = [batch for _, batch in zip(range(2), loader)]
    recompute_bn_statistics(
        model,
        batches,
        lambda data: model(**model.data_preprocessor(data, False), mode='tensor'),
    )
    for name, value in model.state_dict().items():
        if 'running' in name:
            torch.testing.assert_close(state[name], value, msg=name)
    # the statistics the training left were different
    assert any(
        not torch.allclose(state[name], value)
        for name, value in Runner.from_cfg(_cfg(tmp_path / 'no_hook', epochs=1))
        .model.state_dict()
        .items()
        if 'running_var' in name
    )


def test_iteration_based_training_is_refused(tmp_path):
    runner = Runner.from_cfg(_cfg(tmp_path, iters=2))
    with pytest.raises(
        ValueError, match='epoch-based train loop, got IterBasedTrainLoop'
    ):
        runner.train()


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(num_images=0), ValueError, 'num_images'),
        (dict(interval=1.5), TypeError, 'interval must be an int, got 1.5'),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BNReestimationHook(**kwargs)
