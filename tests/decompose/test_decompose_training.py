"""The decomposition configs through the stock mmpretrain tools: KD fine-tune
of a decomposed student initialised from a float checkpoint, then stock
tools/test.py on its plain student checkpoint."""

import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import save_checkpoint

from mmcompress.decompose import DecomposedConv2d
from mmcompress.testing import stock_tool
from tests.e2e.runs import REPO, metrics, run_tool

CONFIGS = 'configs/decompose/mmpretrain/'
TINY = [
    'train_cfg.max_epochs=1',
    'train_cfg.val_interval=1',
    'default_hooks.checkpoint.interval=1',
    'default_hooks.logger.interval=1',
    'param_scheduler.0.end=1',
    'train_dataloader.batch_size=4',
    'train_dataloader.dataset.subset_size=8',
    'val_dataloader.dataset.subset_size=20',
    'test_dataloader.dataset.subset_size=20',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
]


@pytest.mark.slow
def test_group_kd_config_trains_and_stock_test_reads_the_student(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, CONFIGS, 'resnet18-w16_fmnist.py'))
    DefaultScope.get_instance('decompose_e2e', scope_name='mmpretrain')
    torch.manual_seed(0)
    float_model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'float.pth')
    save_checkpoint(dict(state_dict=float_model.state_dict()), ckpt)
    work = str(tmp_path / 'kd')
    proc = run_tool(
        stock_tool('mmpretrain'),
        [
            CONFIGS + 'group_kd_fmnist.py',
            '--work-dir',
            work,
            '--cfg-options',
            *TINY,
            f'load_from={ckpt}',
            f'model.teacher.checkpoint={ckpt}',
            # lr 0: the student keeps the factorised float weights
            'optim_wrapper.optimizer.lr=0.0',
            'param_scheduler.0.eta_min=0.0',
        ],
    )
    assert metrics(work, 'loss_distill_kd'), proc.stdout[-2000:]
    student_ckpt = osp.join(work, 'epoch_1_student.pth')
    state = torch.load(student_ckpt, weights_only=False)['state_dict']
    plan = Config.fromfile(osp.join(REPO, CONFIGS, '_base_/plan_group.py')).plan
    x = torch.randn(2, 128, 8, 8)
    for name, spec in plan.items():  # initialised from the float weights
        conv = float_model.get_submodule(name)
        layer = DecomposedConv2d(conv, spec['method'], spec['ranks'])
        ref = layer(x[:, : conv.in_channels])
        layer.load_state_dict(
            {
                k[len(name) + 1 :]: v
                for k, v in state.items()
                if k.startswith(name + '.')
            }
        )
        # the same factorisation (factors may differ by a rotation where
        # singular values tie, their product does not)
        torch.testing.assert_close(
            layer(x[:, : conv.in_channels]), ref, rtol=1e-4, atol=1e-4
        )
    proc = run_tool(
        stock_tool('mmpretrain', 'test'),
        [
            CONFIGS + 'group_fmnist.py',
            student_ckpt,
            '--work-dir',
            str(tmp_path / 'test'),
            '--cfg-options',
            *TINY[7:],
        ],
    )
    top1 = re.search(r'accuracy/top1: ([0-9.]+)', proc.stdout + proc.stderr)
    assert top1 is not None, proc.stdout[-2000:]
    built = MODELS.build(
        Config.fromfile(osp.join(REPO, CONFIGS, 'group_fmnist.py')).model
    )
    assert sum(isinstance(m, DecomposedConv2d) for m in built.modules()) == len(plan)
