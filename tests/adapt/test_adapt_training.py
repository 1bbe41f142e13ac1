"""BiSMAP segmentor, datasets and pseudo-label hook on tiny generated scenes."""

import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmcompress.datasets.scenes import generate_scenes
from mmcompress.registry import DATASETS, MODELS
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool
from tests.e2e.runs import REPO, run_tool, scalars

CONFIG = osp.join(REPO, 'configs/adapt/mmseg/bismap_fcn_r18-w16_scenes.py')


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('uda')
    src, tgt = str(base / 'src'), str(base / 'tgt')
    generate_scenes('seg', src, seed=0, num_train=8, num_val=4, image_size=64)
    generate_scenes(
        'seg', tgt, seed=0, domain='target', num_train=8, num_val=4, image_size=64
    )
    return src, tgt, str(base)


def small_config(roots, name):
    src, tgt, base = roots
    cfg = Config.fromfile(CONFIG)
    cfg.load_from = None
    cfg.model.data_preprocessor.size = (64, 64)
    data = cfg.train_dataloader.dataset
    data.source.data_root = cfg.custom_hooks[0].source.data_root = src + '/'
    data.target.data_root = cfg.val_dataloader.dataset.data_root = tgt + '/'
    cfg.test_dataloader.dataset.data_root = tgt + '/'
    data.target.pseudo_label_dir = osp.join(base, name, 'pseudo')
    hook = cfg.custom_hooks[0]
    hook.update(interval=2, num_prototypes=4, max_per_class=500, batch_size=4)
    hook.max_target_features = 2000
    return cfg


def test_segmentor_loss_keys_and_ema_update(roots, deterministic):
    cfg = small_config(roots, 'unit')
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    pair = DATASETS.build(cfg.train_dataloader.dataset)
    from mmcompress.adapt.datasets import uda_collate

    batch = uda_collate([pair[0], pair[1]])
    assert [s.metainfo['domain'] for s in batch['data_samples']] == [
        'source',
        'source',
        'target',
        'target',
    ]
    # no pseudo-labels written yet: the target maps read as all-ignore
    assert (batch['data_samples'][2].gt_sem_seg.data == 255).all()
    data = model.data_preprocessor(batch, True)
    model.train()
    losses = model.loss(**data)
    assert set(losses) == {'src.loss_ce', 'tgt.loss_sce', 'tgt.loss_consist'}
    assert float(losses['tgt.loss_sce']) == 0.0
    w = model.decode_head.conv_seg.weight
    torch.testing.assert_close(model.ema['decode_head'].conv_seg.weight, w)
    old = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    model.loss(**data)
    torch.testing.assert_close(
        model.ema['decode_head'].conv_seg.weight, 0.999 * old + 0.001 * (old + 1)
    )
    assert int(model.uda_iter) == 2


def test_ema_teacher_runs_without_dropout_in_train_mode(roots):
    cfg = small_config(roots, 'dropout')
    cfg.model.decode_head.dropout_ratio = 0.5
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model).train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        first, second = model._ema_logits(x), model._ema_logits(x)
        # the official teacher: BN on batch statistics, the classifier's dropout off
        parts = model.ema
        parts['decode_head'].dropout.eval()
        expected = model._parts_logits(parts, x)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, expected)
    model.train()
    with torch.no_grad():
        model._ema_logits(x)
    assert model.ema['decode_head'].dropout.training  # restored
    assert model.ema['backbone'].training


@pytest.mark.slow
def test_bismap_config_trains_and_tests_with_stock_mmseg_tools(roots, tmp_path):
    cfg = small_config(roots, 'e2e')
    shorten_schedule(cfg, iters=4, log_interval=1, param_scheduler=[])
    shrink_data(cfg, batch_size=2)
    cfg.randomness = dict(seed=0)
    short = str(tmp_path / 'short.py')
    cfg.dump(short)
    work_dir = str(tmp_path / 'work')
    proc = run_tool(stock_tool('mmseg'), [short, '--work-dir', work_dir])
    log = proc.stdout + proc.stderr
    pseudo = cfg.train_dataloader.dataset.target.pseudo_label_dir
    assert len(glob.glob(osp.join(pseudo, '*.png'))) == 8
    with open(osp.join(pseudo, 'pseudo_labels.json')) as f:
        marker = json.load(f)
    # written before training (iter 0) and again after iteration 2
    assert marker['method'] == 'gmm' and marker['iteration'] == 2
    assert 0.5 < marker['coverage'] < 0.7
    assert log.count('PseudoLabelHook: 8 gmm pseudo-labels') == 2
    records = [r for r in scalars(work_dir) if 'lr' in r]
    assert len(records) == 4
    assert all('tgt.loss_consist' in r and r['tgt.loss_sce'] > 0 for r in records)
    assert all(0 < r['src.weight'] <= 1 for r in records)
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    proc = run_tool(
        stock_tool('mmseg', 'test'),
        [short, checkpoint, '--work-dir', str(tmp_path / 'test')],
    )
    assert 'mIoU' in proc.stdout + proc.stderr


def test_distillation_round_adds_kd_from_an_unsaved_teacher(
    roots, tmp_path, deterministic
):
    from mmengine.runner import save_checkpoint

    from mmcompress.adapt import distill_kl
    from mmcompress.adapt.datasets import uda_collate

    cfg = small_config(roots, 'kd')
    init_default_scope('mmseg')
    previous = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'round0.pth')
    save_checkpoint({'state_dict': previous.state_dict()}, ckpt)
    cfg.model.distill = dict(checkpoint=ckpt, official_bug=True)
    cfg.model.consistency_weight = 0.0
    cfg.model.decode_head.dropout_ratio = 0.0  # the student forward is repeated
    model = MODELS.build(cfg.model)
    pair = DATASETS.build(cfg.train_dataloader.dataset)
    data = model.data_preprocessor(uda_collate([pair[0], pair[1]]), True)
    model.train()
    tgt = data['inputs'][2:]
    losses = model.loss(**data)
    assert set(losses) == {'src.loss_ce', 'tgt.loss_sce', 'tgt.loss_kd'}
    with torch.no_grad():
        student = model.decode_head(model.extract_feat(tgt))
        previous.eval()
        teacher = previous.decode_head(previous.extract_feat(tgt))
    size = tgt.shape[2:]
    expected = distill_kl(
        model._resize(student, size), model._resize(teacher, size), official_bug=True
    )
    torch.testing.assert_close(losses['tgt.loss_kd'], expected)
    assert not any('distill' in k for k in model.state_dict())


def test_source_only_checkpoint_loads_into_the_uda_segmentor(roots, tmp_path):
    from mmengine.runner import load_checkpoint, save_checkpoint

    cfg = small_config(roots, 'load')
    init_default_scope('mmseg')
    plain = dict(cfg.model, type='EncoderDecoder')
    for key in ('ema_momentum', 'consistency_weight', 'consistency_rampup',
                'sce_alpha', 'sce_beta', 'cutout_ratio', 'transfer'):  # fmt: skip
        plain.pop(key)
    source_only = MODELS.build(plain)
    ckpt = str(tmp_path / 'source_only.pth')
    save_checkpoint({'state_dict': source_only.state_dict()}, ckpt)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu')  # EMA, prototypes optional
    torch.testing.assert_close(
        model.decode_head.conv_seg.weight, source_only.decode_head.conv_seg.weight
    )
