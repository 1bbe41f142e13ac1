"""PSA insertion points: mmseg/mmdet Bottleneck ``plugins=``, the plugin-capable
BasicBlocks, ResNet and HRNet subclasses of mmseg and mmpose, init and loading."""

import copy

import pytest
import torch
from mmengine.registry import DefaultScope

from mmcompress.models.plugins import PolarizedSelfAttention
from mmcompress.registry import MODELS

PSA_P = [dict(cfg=dict(type='PolarizedSelfAttention'), position='after_conv1')]


def hrnet_extra(block='BASIC'):
    """A four-stage HRNet small enough for CPU tests (channels multiples of 8)."""
    return dict(
        stage1=dict(
            num_modules=1,
            num_branches=1,
            block='BOTTLENECK',
            num_blocks=(1,),
            num_channels=(8,),
        ),
        stage2=dict(
            num_modules=1,
            num_branches=2,
            block=block,
            num_blocks=(2, 2),
            num_channels=(8, 16),
        ),
        stage3=dict(
            num_modules=1,
            num_branches=3,
            block=block,
            num_blocks=(1, 1, 1),
            num_channels=(8, 16, 32),
        ),
        stage4=dict(
            num_modules=1,
            num_branches=4,
            block=block,
            num_blocks=(1, 1, 1, 1),
            num_channels=(8, 16, 32, 64),
        ),
    )


def build(scope, cfg):
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(cfg)


def psa_modules(model):
    return [m for m in model.modules() if isinstance(m, PolarizedSelfAttention)]


def assert_official_init(model):
    """q/v convs carry Kaiming fan-in: the C->1 query has std sqrt(2/C) (the
    backbones' Kaiming fan-out would give sqrt(2), mmpose HRNet's 0.001)."""
    psas = psa_modules(model)
    assert psas
    for m in psas:
        w = m.ch_wq.weight
        expected = (2 / m.in_channels) ** 0.5
        assert 0.3 * expected < w.std().item() < 2.0 * expected, m


CASES = {
    'mmseg-ResNet50-Bottleneck': (
        'mmseg',
        dict(
            type='ResNet',
            depth=50,
            base_channels=16,
            plugins=[
                dict(
                    cfg=dict(type='PolarizedSelfAttention', mode='sequential'),
                    position='after_conv2',
                )
            ],
        ),
    ),
    'mmdet-ResNet50-Bottleneck': (
        'mmdet',
        dict(
            type='ResNet',
            depth=50,
            base_channels=16,
            plugins=[
                dict(cfg=dict(type='PolarizedSelfAttention'), position='after_conv2')
            ],
        ),
    ),
    'mmseg-ResNet18-BasicBlock': (
        'mmseg',
        dict(
            type='SegPSAResNet',
            depth=18,
            base_channels=16,
            deep_stem=True,
            stem_channels=16,
            plugins=PSA_P,
        ),
    ),
    'mmseg-HRNet': ('mmseg', dict(type='SegPSAHRNet', extra=hrnet_extra())),
    'mmpose-ResNet18-BasicBlock': (
        'mmpose',
        dict(type='PosePSAResNet', depth=18, base_channels=16, plugins=PSA_P),
    ),
    'mmpose-ResNet50-Bottleneck': (
        'mmpose',
        dict(
            type='PosePSAResNet',
            depth=50,
            base_channels=16,
            plugins=[
                dict(
                    cfg=dict(type='PolarizedSelfAttention'),
                    position='after_conv2',
                    stages=(False, True, True, True),
                )
            ],
        ),
    ),
    'mmpose-HRNet': ('mmpose', dict(type='PosePSAHRNet', extra=hrnet_extra())),
}


@pytest.mark.parametrize('case', list(CASES))
def test_insertion_builds_runs_and_keeps_official_init(case):
    scope, cfg = CASES[case]
    torch.manual_seed(0)
    model = build(scope, copy.deepcopy(cfg))
    model.init_weights()
    assert_official_init(model)
    outs = model(torch.randn(2, 3, 64, 64))
    assert all(torch.isfinite(o).all() for o in outs)
    sum(o.sum() for o in outs).backward()
    assert all(m.ch_wq.weight.grad is not None for m in psa_modules(model))


def test_psa_count_and_channels_per_insertion_point():
    """One PSA per block of the chosen stages, sized to the conv it follows."""
    r50 = build('mmpose', CASES['mmpose-ResNet50-Bottleneck'][1])
    assert not hasattr(r50.layer1[0], 'psa')
    assert [m.in_channels for m in psa_modules(r50)] == [32] * 4 + [64] * 6 + [128] * 3
    hr = build('mmseg', dict(type='SegPSAHRNet', extra=hrnet_extra()))
    # every BasicBlock (2+2 / 1+1+1 / 1+1+1+1), none in the stage-1 Bottleneck
    assert [m.in_channels for m in psa_modules(hr)] == [
        8,
        8,
        16,
        16,
        8,
        16,
        32,
        8,
        16,
        32,
        64,
    ]
    assert all(m.mode == 'sequential' and m.impl == 'official' for m in psa_modules(hr))
    assert not hasattr(hr.layer1[0], 'psa')


@pytest.mark.parametrize(
    'scope, block_path',
    [
        ('mmseg', 'mmcompress.models.backbones.psa_seg.SegPluginBasicBlock'),
        ('mmpose', 'mmcompress.models.backbones.psa_pose.PosePluginBasicBlock'),
    ],
)
def test_basic_block_applies_psa_after_conv1_bn_relu(scope, block_path):
    """block(x) == relu(bn2(conv2(PSA(relu(bn1(conv1(x)))))) + x), eval mode."""
    import importlib

    module, name = block_path.rsplit('.', 1)
    block_cls = getattr(importlib.import_module(module), name)
    torch.manual_seed(0)
    block = block_cls(16, 16, plugins=PSA_P)
    block.eval()
    for bn in (block.norm1, block.norm2):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 16, 8, 8)
    hidden = torch.relu(block.norm1(block.conv1(x)))
    expected = torch.relu(block.norm2(block.conv2(block.psa(hidden))) + x)
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize(
    'scope, psa_type, plain_type, kwargs',
    [
        (
            'mmseg',
            'SegPSAResNet',
            'ResNetV1c',
            dict(depth=18, base_channels=16, stem_channels=16),
        ),
        ('mmpose', 'PosePSAResNet', 'ResNet', dict(depth=18, base_channels=16)),
        ('mmpose', 'PosePSAResNet', 'ResNet', dict(depth=50, base_channels=16)),
        ('mmseg', 'SegPSAHRNet', 'HRNet', dict(extra=hrnet_extra())),
        ('mmpose', 'PosePSAHRNet', 'HRNet', dict(extra=hrnet_extra())),
    ],
)
def test_without_plugins_equals_the_plain_backbone(scope, psa_type, plain_type, kwargs):
    """Same keys, same outputs as the downstream backbone when no plugin is set."""
    extra_kw = dict(deep_stem=True) if psa_type == 'SegPSAResNet' else {}
    if 'HRNet' in psa_type:
        extra_kw = dict(plugins=[])
    torch.manual_seed(0)
    plain = build(scope, dict(type=plain_type, **kwargs))
    psa = build(scope, dict(type=psa_type, **kwargs, **extra_kw))
    psa.load_state_dict(plain.state_dict(), strict=True)
    plain.eval()  # (downstream ResNets' train() returns None)
    psa.eval()
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(plain(x), psa(x)):
        torch.testing.assert_close(a, b)


def test_plain_checkpoint_loads_and_logs_new_psa_weights(tmp_path, capsys):
    """Plain HRNet weights load into the PSA HRNet; the PSA tensors are listed."""
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import load_checkpoint

    torch.manual_seed(0)
    plain = build('mmpose', dict(type='HRNet', extra=hrnet_extra()))
    path = str(tmp_path / 'plain_hrnet.pth')
    torch.save({'state_dict': plain.state_dict()}, path)
    psa = build('mmpose', dict(type='PosePSAHRNet', extra=hrnet_extra()))
    before = {k: v.clone() for k, v in psa.state_dict().items() if '.psa.' in k}
    MMLogger.get_instance('test_psa_backbones')
    capsys.readouterr()
    load_checkpoint(psa, path, map_location='cpu')
    text = ''.join(capsys.readouterr())
    assert (
        'PolarizedSelfAttention stage2.0.branches.0.0.psa: 10 tensors not in '
        'the checkpoint keep their new (official) initialisation' in text
    )
    assert text.count('not in the checkpoint keep their new') == 11
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(psa.state_dict()[key], value)
    for key, value in before.items():
        torch.testing.assert_close(psa.state_dict()[key], value)


def test_pretrained_init_cfg_keeps_checkpoint_psa_weights(tmp_path):
    """init_cfg=Pretrained with a PSA checkpoint: PSA weights are not re-initialised."""
    torch.manual_seed(0)
    source = build('mmseg', dict(type='SegPSAHRNet', extra=hrnet_extra()))
    with torch.no_grad():
        for m in psa_modules(source):
            m.ch_wq.weight.fill_(0.25)
    path = str(tmp_path / 'psa_hrnet.pth')
    torch.save({'state_dict': source.state_dict()}, path)
    target = build(
        'mmseg',
        dict(
            type='SegPSAHRNet',
            extra=hrnet_extra(),
            init_cfg=dict(type='Pretrained', checkpoint=path),
        ),
    )
    target.init_weights()
    for m in psa_modules(target):
        assert torch.all(m.ch_wq.weight == 0.25)
