"""The UN ViT config through the stock mmpretrain tools (optimizer-step
counter set by UNIterHook), then the trained checkpoint folded."""

import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import load_checkpoint

from mmcompress.models.norms import UN, fuse_un
from mmcompress.testing import shorten_schedule, shrink_data, stock_tool
from tests.e2e.runs import REPO, run_tool

CONFIG = 'configs/un/mmpretrain/vit_un_fmnist.py'


@pytest.mark.slow
def test_un_vit_trains_with_stock_tools_and_folds(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    shorten_schedule(cfg, iters=6, log_interval=1, param_scheduler=[])
    shrink_data(cfg, batch_size=4, subset_size=dict(train=24, val=20, test=20))
    cfg.model.backbone.norm_cfg.update(warmup_iters=2, window_size=2, counter='step')
    cfg.custom_hooks = [dict(type='UNIterHook', reset_iters=True)]
    cfg.work_dir = str(tmp_path / 'un')
    path = str(tmp_path / 'vit_un.py')
    cfg.dump(path)
    run_tool(stock_tool('mmpretrain'), [path])
    ckpt = osp.join(cfg.work_dir, 'iter_6.pth')
    proc = run_tool(
        stock_tool('mmpretrain', 'test'),
        [path, ckpt, '--work-dir', str(tmp_path / 'test')],
    )
    assert re.search(r'accuracy/top1: [0-9.]+', proc.stdout + proc.stderr)
    DefaultScope.get_instance('un_e2e', scope_name='mmpretrain')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu')
    layer = model.backbone.layers[0].ln1
    assert isinstance(layer, UN) and int(layer.iters) == 6  # one per step
    assert not torch.equal(layer.running_var, torch.ones_like(layer.running_var))
    model.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref = model(x, mode='tensor')
        fuse_un(model, (x,))
        assert (model(x, mode='tensor') - ref).abs().max().item() <= 1e-5
