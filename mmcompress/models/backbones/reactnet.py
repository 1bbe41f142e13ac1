"""ReActNet (MobileNetV1-based binary network) as an mmpretrain-style backbone.

Follows the ReActNet-A blocks of the official AdamBNN code (spec §5a). Each block::

    out1 = BN(Conv3x3(RSign(x))) + (AvgPool2d(2)(x) if stride 2 else x)
    out1 = RPReLU(out1)
    out2 = RSign(out1)
    out2 = BN(Conv1x1(out2)) + out1                       if C_in == C_out
    out2 = cat(BN(Conv1x1_a(out2)) + out1,
               BN(Conv1x1_b(out2)) + out1)                if C_out == 2 * C_in
    out  = RPReLU(out2)

The stem is a real-valued 3x3 convolution + BN (no activation), as in the official
model. ``binary_activations`` / ``binary_weights`` select the AdamBNN step: step 1
trains binary activations with real weights, step 2 binary weights and binary
activations starting from the step-1 checkpoint (parameter names are identical).

The block convolutions are :class:`~mmcompress.quant.layers.QuantConv2d` with a
:class:`~mmcompress.quant.binary.ScaledBinaryWeightQuantizer` (disabled in step 1);
RSign is :class:`~mmcompress.quant.binary.RSignQuantizer`. The shortcut pooling is
``AvgPool2d(2, ceil_mode=True)``: the official ``AvgPool2d(2)`` on even feature
sizes, and also defined on odd ones (e.g. 7x7 -> 4x4, matching the strided conv).
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmcompress.quant.binary import RPReLU, RSignQuantizer, ScaledBinaryWeightQuantizer
from mmcompress.quant.layers import QuantConv2d
from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number


class ReActBlock(nn.Module):
    """One ReActNet-A block (3x3 binary conv, then 1x1 binary conv(s)).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels, equal to ``in_channels`` or twice it.
        stride (int): Stride of the 3x3 convolution, 1 or 2.
        binary_activations (bool): Binarize the conv inputs with RSign.
        binary_weights (bool): Binarize the conv weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        binary_activations: bool,
        binary_weights: bool,
    ) -> None:
        super().__init__()
        if out_channels not in (in_channels, 2 * in_channels):
            raise ValueError(
                'a ReActNet block keeps or doubles the channels; got in_channels='
                f'{in_channels}, out_channels={out_channels} (valid: '
                f'{in_channels} or {2 * in_channels})'
            )
        if stride not in (1, 2):
            raise ValueError(f'ReActNet block stride must be 1 or 2, got {stride}')

        def conv(kernel_size: int, conv_stride: int = 1) -> QuantConv2d:
            # The weight quantizer exists in both steps (disabled in step 1),
            # so step-1 and step-2 checkpoints have the same keys.
            weight_quantizer = ScaledBinaryWeightQuantizer(num_channels=in_channels)
            weight_quantizer.enabled = binary_weights
            return QuantConv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride=conv_stride,
                padding=kernel_size // 2,
                bias=False,
                weight_quantizer=weight_quantizer,
            )

        self.sign3x3 = self._rsign(in_channels, binary_activations)
        self.conv3x3 = conv(3, stride)
        self.bn3x3 = nn.BatchNorm2d(in_channels)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else None
        self.act1 = RPReLU(in_channels)

        self.sign1x1 = self._rsign(in_channels, binary_activations)
        num_branches = out_channels // in_channels
        self.convs1x1 = nn.ModuleList(conv(1) for _ in range(num_branches))
        self.bns1x1 = nn.ModuleList(
            nn.BatchNorm2d(in_channels) for _ in range(num_branches)
        )
        self.act2 = RPReLU(out_channels)

    @staticmethod
    def _rsign(num_channels: int, binary: bool) -> nn.Module:
        """An RSign over the channels of a feature map, or the identity.

        The identity (not a disabled RSign) keeps a real-valued network free of
        unused parameters, which DDP would reject.
        """
        if not binary:
            return nn.Identity()
        return RSignQuantizer(num_channels=num_channels, channel_axis=1)

    def forward(self, x: Tensor) -> Tensor:
        """Forward one block."""
        identity = self.pool(x) if self.pool is not None else x
        out1 = self.act1(self.bn3x3(self.conv3x3(self.sign3x3(x))) + identity)
        binary_out1 = self.sign1x1(out1)
        out2 = torch.cat(
            [
                bn(conv(binary_out1)) + out1
                for conv, bn in zip(self.convs1x1, self.bns1x1)
            ],
            dim=1,
        )
        return self.act2(out2)


@MODELS.register_module()
class ReActNet(BaseModule):
    """ReActNet binary backbone (MobileNetV1 layout, ReActNet-A blocks).

    Args:
        arch (str | dict): ``'a'`` (ReActNet-A for 224x224 ImageNet: stem 32,
            blocks up to 1024 channels), ``'fmnist'`` (a small variant for 28x28
            Fashion-MNIST, trains on CPU in minutes), or a dict with
            ``stem_channels`` (int) and ``blocks`` (list of
            ``(out_channels, stride)``).
        in_channels (int): Input image channels (1 for Fashion-MNIST).
            Defaults to 3.
        stem_stride (int, optional): Stride of the real-valued stem conv.
            Defaults to the arch's (2 for ``'a'``, 1 for ``'fmnist'``).
        widen_factor (float): Multiplier applied to all channel counts.
            Defaults to 1.0.
        binary_activations (bool): Binarize the inputs of block convs with RSign
            (AdamBNN steps 1 and 2). Defaults to True.
        binary_weights (bool): Binarize the block conv weights as
            ``sign(W) * mean|W|`` per output channel (AdamBNN step 2).
            Defaults to False.
        out_indices (Sequence[int]): Indices of the blocks whose outputs are
            returned (negative values count from the end). Defaults to ``(-1,)``.
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    arch_settings: Dict[str, dict] = {
        'a': dict(
            stem_channels=32,
            stem_stride=2,
            blocks=[
                (64, 1),
                (128, 2),
                (128, 1),
                (256, 2),
                (256, 1),
                (512, 2),
                (512, 1),
                (512, 1),
                (512, 1),
                (512, 1),
                (512, 1),
                (1024, 2),
                (1024, 1),
            ],
        ),
        'fmnist': dict(
            stem_channels=16, stem_stride=1, blocks=[(32, 2), (32, 1), (64, 2), (64, 1)]
        ),
    }

    def __init__(
        self,
        arch: Union[str, dict] = 'a',
        in_channels: int = 3,
        stem_stride: Optional[int] = None,
        widen_factor: float = 1.0,
        binary_activations: bool = True,
        binary_weights: bool = False,
        out_indices: Sequence[int] = (-1,),
        init_cfg: Optional[Union[dict, List[dict]]] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        setting = self._parse_arch(arch)
        check_number(
            'widen_factor', widen_factor, low=0, low_open=True, owner='ReActNet'
        )
        if stem_stride is None:
            stem_stride = setting.get('stem_stride', 1)

        def width(channels: int) -> int:
            return max(1, int(round(channels * widen_factor)))

        stem_channels = width(setting['stem_channels'])
        self.stem = nn.Sequential(
            nn.Conv2d(
                in_channels, stem_channels, 3, stride=stem_stride, padding=1, bias=False
            ),
            nn.BatchNorm2d(stem_channels),
        )

        blocks = []
        channels = stem_channels
        for out_channels, stride in setting['blocks']:
            out_channels = width(out_channels)
            blocks.append(
                ReActBlock(
                    channels, out_channels, stride, binary_activations, binary_weights
                )
            )
            channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = [block.act2.prelu.num_parameters for block in blocks]

        num_blocks = len(blocks)
        self.out_indices = []
        for index in out_indices:
            if not -num_blocks <= index < num_blocks:
                raise ValueError(
                    f'out_indices entry {index} is out of range for {num_blocks} '
                    f'blocks (valid: {-num_blocks}..{num_blocks - 1})'
                )
            self.out_indices.append(index % num_blocks)
        self.binary_activations = binary_activations
        self.binary_weights = binary_weights

    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        """Return the arch dict for a preset name or check a custom dict."""
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise ValueError(
                    f'unknown ReActNet arch {arch!r}; valid presets: '
                    f'{sorted(self.arch_settings)} or a dict with '
                    '"stem_channels" and "blocks"'
                )
            return self.arch_settings[arch]
        if not isinstance(arch, dict) or not {'stem_channels', 'blocks'} <= set(arch):
            raise ValueError(
                'a custom ReActNet arch must be a dict with keys '
                f'"stem_channels" and "blocks", got {arch!r}'
            )
        if len(arch['blocks']) == 0:
            raise ValueError('a custom ReActNet arch needs at least one block')
        return arch

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Return the outputs of the blocks in ``out_indices``."""
        x = self.stem(x)
        outs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)
