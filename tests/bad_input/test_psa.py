"""Polarized Self-Attention mistakes: channels, mode/impl, plugin positions."""

import pytest
import torch

from mmcompress.models.plugins import PolarizedSelfAttention
from mmcompress.registry import MODELS


def test_psa_channels_not_divisible_by_two():
    """PSA inserted where the block has an odd number of channels.

    Message: needs in_channels divisible by 2, got 15
    """
    with pytest.raises(
        ValueError,
        match=r"PolarizedSelfAttention\(mode='parallel"
        r"', impl='official'\) needs in_channels divisible by 2, "
        'got 15',
    ):
        PolarizedSelfAttention(15)


def test_psa_sequential_official_channels_not_divisible_by_eight():
    """The official PSA_s inserted where the channels are not a multiple of 8.

    Message: needs in_channels divisible by 8, got 20
    """
    with pytest.raises(
        ValueError,
        match=r'needs in_channels divisible by 8, got 20'
        r".*or use mode='parallel'",
    ):
        PolarizedSelfAttention(20, mode='sequential')


def test_psa_unknown_mode():
    """A PSA config with mode='series' (or another unknown layout).

    Message: unknown mode='series'; valid modes are ('parallel', 'sequential')
    """
    with pytest.raises(
        ValueError,
        match=r"unknown mode='series'; valid modes are "
        r"\('parallel', 'sequential'\)",
    ):
        MODELS.build(dict(type='PolarizedSelfAttention', in_channels=16, mode='series'))


def test_psa_unknown_impl():
    """A PSA config with impl='nvidia' (or another unknown implementation).

    Message: unknown impl='nvidia'; valid values are ('official', 'paper')
    """
    with pytest.raises(
        ValueError,
        match=r"unknown impl='nvidia'; valid values "
        r"are \('official', 'paper'\)",
    ):
        PolarizedSelfAttention(16, impl='nvidia')


def test_psa_called_on_a_tensor_with_other_channels():
    """A PSA block receives a feature map with a different channel count.

    Message: expects an (N, 16, H, W) input, got (2, 8, 4, 4)
    """
    with pytest.raises(
        ValueError,
        match=r'expects an \(N, 16, H, W\) input, got '
        r'\(2, 8, 4, 4\)',
    ):
        PolarizedSelfAttention(16)(torch.randn(2, 8, 4, 4))


def test_psa_plugin_position_not_in_basic_block():
    """A plugin placed after_conv3 in a ResNet-18 (BasicBlocks have two convs).

    Message: has 2 convs: plugin position 'after_conv3' is not supported
    """
    from mmcompress.models.backbones.psa_seg import SegPSAResNet

    with pytest.raises(
        ValueError,
        match=r'SegPluginBasicBlock has 2 convs: plugin '
        r"position 'after_conv3' is not supported \(valid: "
        r"\['after_conv1', 'after_conv2'\]\)",
    ):
        SegPSAResNet(
            depth=18,
            plugins=[
                dict(cfg=dict(type='PolarizedSelfAttention'), position='after_conv3')
            ],
        )


def test_psa_plugin_without_cfg_key():
    """A plugin given as the PSA config itself instead of dict(cfg=..., position=...).

    Message: a plugin is dict(cfg=dict(type=...), position='after_conv1')
    """
    from mmcompress.models.backbones.psa_pose import PosePSAHRNet

    extra = dict(
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
            block='BASIC',
            num_blocks=(1, 1),
            num_channels=(8, 16),
        ),
        stage3=dict(
            num_modules=1,
            num_branches=3,
            block='BASIC',
            num_blocks=(1, 1, 1),
            num_channels=(8, 16, 32),
        ),
        stage4=dict(
            num_modules=1,
            num_branches=4,
            block='BASIC',
            num_blocks=(1, 1, 1, 1),
            num_channels=(8, 16, 32, 64),
        ),
    )
    with pytest.raises(
        ValueError,
        match=r'a plugin is dict\(cfg=dict\(type=...\), '
        r"position='after_conv1'\), got \{'type': ",
    ):
        PosePSAHRNet(extra=extra, plugins=[dict(type='PolarizedSelfAttention')])


def test_psa_plugin_stages_of_wrong_length():
    """A ResNet plugin with a stages tuple that does not have one flag per stage.

    Message: must have one flag per stage (4)
    """
    from mmcompress.models.backbones.psa_pose import PosePSAResNet

    with pytest.raises(
        ValueError,
        match=r'plugin stages=\(True, False\) must have '
        r'one flag per stage \(4\)',
    ):
        PosePSAResNet(
            depth=18,
            plugins=[
                dict(
                    cfg=dict(type='PolarizedSelfAttention'),
                    position='after_conv1',
                    stages=(True, False),
                )
            ],
        )


def test_psa_fused_given_as_a_string():
    """A PSA config with fused='yes' (a string, not a bool).

    Message: fused must be True (fused CPU kernels where they apply) or False
    """
    with pytest.raises(
        TypeError,
        match=r'fused must be True \(fused CPU kernels where they apply\) or '
        r"False \(eager\), got 'yes' \(str\)",
    ):
        PolarizedSelfAttention(16, fused='yes')
