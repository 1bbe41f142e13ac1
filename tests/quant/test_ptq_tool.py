"""tools/ptq.py end to end: its checkpoint is evaluated by the stock mmpretrain
tools/test.py with the same (QAT-style) config and exported by tools/export_onnx.py."""

import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from mmcompress.registry import MODELS
from mmcompress.testing import stock_tool
from tests.e2e.runs import REPO, run_tool

CONFIG = osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'ptq_w4a4_fmnist.py')
PTQ = osp.join(REPO, 'tools', 'ptq.py')
EXPORT = osp.join(REPO, 'tools', 'export_onnx.py')
DATA = [
    f'{split}_dataloader.{key}={value}'
    for split in ('train', 'test')
    for key, value in (('num_workers', 0), ('persistent_workers', False))
] + [
    'train_dataloader.dataset.subset_size=200',
    'test_dataloader.dataset.subset_size=300',
]


@pytest.mark.slow
def test_ptq_checkpoint_through_stock_test_and_export(tmp_path, deterministic):
    """A float checkpoint (random init: the plumbing is what is tested) ->
    tools/ptq.py W4A4 with unit-wise reconstruction of two blocks, resumed
    after one -> stock tools/test.py gives the accuracy ptq.py measured ->
    tools/export_onnx.py --format qdq agrees 100% with PyTorch on the test
    images."""
    model = MODELS.build(Config.fromfile(CONFIG).model.model)
    fp = str(tmp_path / 'fp.pth')
    torch.save(dict(state_dict=model.state_dict()), fp)
    out, work = str(tmp_path / 'ptq.pth'), str(tmp_path / 'work')
    units = 'ptq.units=[backbone.layer1.0,backbone.layer1.1]'
    base = [
        CONFIG,
        fp,
        '--out',
        out,
        '--work-dir',
        work,
        '--num-images',
        '64',
        '--iters',
        '20',
        '--no-progress',
        '--test',
    ]
    options = ['--cfg-options', *DATA, units]
    args = base + ['--plot', str(tmp_path / 'sqnr.png')] + options
    result = json.loads(run_tool(PTQ, args).stdout.strip().splitlines()[-1])
    assert list(result['units']) == ['backbone.layer1.0', 'backbone.layer1.1']
    assert osp.isfile(tmp_path / 'sqnr.png')
    with open(tmp_path / 'sqnr.json') as file:
        sqnr = json.load(file)
    assert len(sqnr) == 14 and all(v['own_db'] > 0 for v in sqnr.values())
    # resume: a state with the first unit done reconstructs only the second
    state_path = osp.join(work, 'ptq_state.pth')
    state = torch.load(state_path, weights_only=True)
    assert state['done'] == ['backbone.layer1.0', 'backbone.layer1.1']
    state['done'] = ['backbone.layer1.0']
    torch.save(state, state_path)
    proc = run_tool(PTQ, base + ['--resume'] + options)
    resumed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(resumed['units']) == ['backbone.layer1.1']

    stock = run_tool(
        stock_tool('mmpretrain', 'test'),
        [
            CONFIG,
            out,
            '--work-dir',
            str(tmp_path / 'stock'),
            '--cfg-options',
            *DATA[4:],
        ],
    )
    logged = re.findall(r'accuracy/top1: ([\d.]+)', stock.stdout + stock.stderr)
    assert float(logged[-1]) == pytest.approx(result['test']['accuracy/top1'])

    proc = run_tool(
        EXPORT,
        [
            CONFIG,
            out,
            '--out',
            str(tmp_path / 'm.onnx'),
            '--shape',
            '1',
            '1',
            '28',
            '28',
            '--format',
            'qdq',
            '--verify',
            '300',
            '--cfg-options',
            *DATA[4:],
        ],
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report['top1_agreement'] == 1.0
