"""mmcompress.testing: quick-run config shrinking and the stock tools' paths."""

import pytest
from mmengine.config import Config

from mmcompress.testing import shorten_schedule, shrink_data, stock_tool


def _config():
    fmnist = dict(type='FashionMNISTDataset', split='train')
    return Config(
        dict(
            train_dataloader=dict(
                batch_size=128,
                num_workers=4,
                persistent_workers=True,
                dataset=dict(type='RepeatDataset', times=2, dataset=fmnist),
            ),
            val_dataloader=dict(
                batch_size=500,
                num_workers=4,
                persistent_workers=True,
                dataset=dict(type='FashionSceneDetDataset', data_root='x'),
            ),
            test_dataloader=None,
            train_cfg=dict(by_epoch=True, max_epochs=8, val_interval=1),
            param_scheduler=[dict(type='CosineAnnealingLR', end=8)],
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=50),
                checkpoint=dict(type='CheckpointHook', interval=1, save_best='auto'),
            ),
        )
    )


def test_shrink_data_sets_workers_batch_and_subsets_through_wrappers():
    cfg = shrink_data(_config(), batch_size=4, subset_size=dict(train=64, val=10))
    train, val = cfg.train_dataloader, cfg.val_dataloader
    assert (train.num_workers, train.persistent_workers, train.batch_size) == (
        0,
        False,
        4,
    )
    assert (val.num_workers, val.persistent_workers, val.batch_size) == (0, False, 4)
    assert train.dataset.dataset.subset_size == 64  # inside the RepeatDataset
    assert 'subset_size' not in val.dataset  # scenes have no subset option
    assert cfg.test_dataloader is None


def test_shrink_data_one_size_and_selected_splits():
    cfg = shrink_data(_config(), subset_size=32, splits=['val'])
    assert 'subset_size' not in cfg.train_dataloader.dataset.dataset
    assert cfg.train_dataloader.num_workers == 4  # not in splits
    assert cfg.val_dataloader.batch_size == 500  # batch kept


def test_shorten_schedule_by_iterations():
    cfg = shorten_schedule(
        _config(), iters=6, log_interval=1, param_scheduler=[], max_keep_ckpts=-1
    )
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=6, val_interval=6)
    assert cfg.default_hooks.checkpoint == dict(
        type='CheckpointHook', by_epoch=False, interval=6, max_keep_ckpts=-1
    )
    assert cfg.default_hooks.logger == dict(type='LoggerHook', interval=1)
    assert cfg.param_scheduler == []


def test_shorten_schedule_by_epochs_keeps_what_is_not_given():
    cfg = shorten_schedule(_config(), epochs=2, interval=1)
    assert cfg.train_cfg == dict(by_epoch=True, max_epochs=2, val_interval=2)
    assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', interval=1)
    assert cfg.default_hooks.logger.interval == 50
    assert cfg.param_scheduler == [dict(type='CosineAnnealingLR', end=8)]


@pytest.mark.parametrize('iters, epochs', [(None, None), (2, 2)])
def test_shorten_schedule_needs_exactly_one_length(iters, epochs):
    with pytest.raises(ValueError, match=f'iters={iters}, epochs={epochs}'):
        shorten_schedule(_config(), iters=iters, epochs=epochs)


def test_stock_tool_of_a_package_without_tools_names_the_path():
    with pytest.raises(
        FileNotFoundError, match=r'json ships no .*\.mim.tools.train\.py'
    ):
        stock_tool('json')
