"""tools/ptq.py end to end: its checkpoint is evaluated by the stock mmpretrain
tools/test.py with the same (QAT-style) config and exported by tools/export_onnx.py."""

import glob
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcompress.registry import MODELS
from mmcompress.testing import stock_tool
from tests.e2e.runs import REPO, load_script, run_tool

CONFIG = osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'ptq_w4a4_fmnist.py')
KD_CONFIG = osp.join(REPO, 'configs', 'quant', 'mmpretrain', 'ptq_kd_w4a4_fmnist.py')
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


def _tool():
    return load_script('tools', 'ptq.py')


@pytest.mark.slow
def test_ptq_two_stage_kd_on_k_images_per_class(tmp_path, deterministic):
    """ptq_kd_w4a4_fmnist.py with 2 images per class: 20 calibration images,
    stage 1 on two blocks, stage 2 joint KD; --kd-iters 0 leaves stage 1 only.
    The float checkpoint is a random init (the plumbing is tested; the KD
    itself in test_ptq_reconstruct.py)."""
    tool = _tool()
    model = MODELS.build(Config.fromfile(KD_CONFIG).model.model)
    fp = str(tmp_path / 'fp.pth')
    torch.save(dict(state_dict=model.state_dict()), fp)
    argv = [
        KD_CONFIG,
        fp,
        '--work-dir',
        str(tmp_path / 'work'),
        '--images-per-class',
        '2',
        '--iters',
        '3',
        '--kd-iters',
        '4',
        '--no-progress',
        '--cfg-options',
        *DATA,
        'ptq.units=[backbone.layer1.0,backbone.layer1.1]',
    ]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        result = tool.main(argv)
        assert list(result['units']) == ['backbone.layer1.0', 'backbone.layer1.1']
        assert result['kd']['kd_after'] < result['kd']['kd_before']
        opts = tool.settings(
            Config.fromfile(KD_CONFIG),
            tool.build_parser().parse_args(
                [KD_CONFIG, fp, '--kd-iters', '0', '--images-per-class', '3']
            ),
        )
    assert opts['kd'] is None and opts['images_per_class'] == 3
    assert opts['reconstruction']['iters'] == 300
    log = open(
        max(glob.glob(str(tmp_path / 'work' / '*' / '*.log')), key=osp.getmtime)
    ).read()
    assert 'set from 20 images' in log
