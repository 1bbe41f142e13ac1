"""NAS-Bench-201 network: the five cell ops, the cell, TinyNetwork and its backbone.

Same structure as the benchmark's ``TinyNetwork`` / ``InferCell`` (xautodl): a 3x3
conv + BN stem, three stages of ``N`` cells with ``C``, ``2C``, ``4C`` channels
separated by ResNet basic blocks of stride 2, then BN-ReLU, global pooling and a
linear classifier. Conv ops are ReLU-Conv-BN without bias; pooling is 3x3 average
with ``count_include_pad=False``; ``none`` multiplies its input by zero (so a cell
whose output node only receives ``none`` edges outputs zeros and passes zero
gradients, as in the benchmark).
"""

from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmcompress.registry import MODELS

from .space import NB201_EDGES, NB201_OPS, check_nb201_arch, parse_nb201


class ReLUConvBN(nn.Sequential):
    """ReLU, bias-free Conv2d, BatchNorm2d."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class _ChannelsLastAvgPool(torch.autograd.Function):
    """3x3 / stride 1 / pad 1 average pooling (``count_include_pad=False``) run by
    the channels-last CPU kernels, as one autograd node like the plain op."""

    @staticmethod
    def forward(ctx, x):
        x_cl = x.contiguous(memory_format=torch.channels_last)
        ctx.save_for_backward(x_cl)
        return F.avg_pool2d(x_cl, 3, 1, 1, False, False).contiguous()

    @staticmethod
    def backward(ctx, grad):
        (x_cl,) = ctx.saved_tensors
        grad_in = torch.ops.aten.avg_pool2d_backward(
            grad.contiguous(memory_format=torch.channels_last),
            x_cl,
            [3, 3],
            [1, 1],
            [1, 1],
            False,
            False,
            None,
        )
        return grad_in.contiguous()


class AvgPool3x3(nn.AvgPool2d):
    """The ``avg_pool_3x3`` op: 3x3 average, stride 1, padding 1,
    ``count_include_pad=False``.

    On the CPU it pools a channels-last copy of the input: PyTorch's channels-last
    kernel vectorises over channels and sums every window (and accumulates every
    input gradient) in the same order as the scalar NCHW kernel, so output and
    gradient are bit-identical (``tests/nas/test_scoring_exact.py``) and faster
    for the 16-64 channels of NB201. The conversion happens inside one autograd
    node, so the backward graph (and the order in which the gradients of a node
    are summed) is that of ``nn.AvgPool2d``. No double backward; elsewhere (GPU,
    not 4-D) it is plain ``nn.AvgPool2d``.
    """

    def __init__(self):
        super().__init__(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != 'cpu' or x.dim() != 4:
            return super().forward(x)
        return _ChannelsLastAvgPool.apply(x)


def make_op(name: str, channels: int) -> nn.Module:
    """Build an NB201 op of stride 1 with ``channels`` in and out."""
    if name == 'none':
        return Zero()
    if name == 'skip_connect':
        return nn.Identity()
    if name == 'nor_conv_1x1':
        return ReLUConvBN(channels, channels, 1)
    if name == 'nor_conv_3x3':
        return ReLUConvBN(channels, channels, 3)
    if name == 'avg_pool_3x3':
        return AvgPool3x3()
    raise ValueError(f'unknown NB201 op {name!r}; valid ops are {list(NB201_OPS)}')


class InferCell(nn.Module):
    """A 4-node NB201 cell; node ``i`` is the sum of its incoming edge ops."""

    def __init__(self, arch: Sequence[int], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(make_op(NB201_OPS[o], channels) for o in arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in (1, 2, 3):
            nodes.append(
                sum(
                    op(nodes[src])
                    for op, (dst, src) in zip(self.edges, NB201_EDGES)
                    if dst == node
                )
            )
        return nodes[-1]


class ResNetBasicblock(nn.Module):
    """Stride-2 residual block between stages (avg-pool + 1x1 conv shortcut)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    """The NB201 macro network for one cell architecture.

    Args:
        arch (Sequence[int]): Six op indices (see :mod:`mmcompress.nas.space`).
        C (int): Stem channels. Defaults to 16.
        N (int): Cells per stage. Defaults to 5.
        num_classes (int): Classifier outputs; 0 for none. Defaults to 10.
        in_channels (int): Input channels. Defaults to 3.
    """

    def __init__(
        self,
        arch: Sequence[int],
        C: int = 16,
        N: int = 5,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        self.arch = check_nb201_arch(arch)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        cells, c_prev = [], C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                cells.append(ResNetBasicblock(c_prev, c))
            cells.extend(InferCell(self.arch, c) for _ in range(N))
            c_prev = c
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.out_channels = c_prev
        self.classifier = nn.Linear(c_prev, num_classes) if num_classes else None

    def extract_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Return the stem output and every cell output (``1 + 3N + 2`` tensors)."""
        feats = [self.stem(x)]
        for cell in self.cells:
            feats.append(cell(feats[-1]))
        return feats

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features after the last BN-ReLU."""
        feat = self.stem(x)
        for cell in self.cells:
            feat = cell(feat)
        return self.lastact(feat).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits (the pooled features if ``num_classes=0``)."""
        out = self.pooled(x)
        return self.classifier(out) if self.classifier is not None else out


@MODELS.register_module()
class NB201Backbone(BaseModule):
    """An NB201 architecture as an mmpretrain backbone (pooled features out).

    Args:
        arch (str): NB201 architecture string.
        C (int): Stem channels. Defaults to 16.
        N (int): Cells per stage. Defaults to 5.
        in_channels (int): Input channels (1 for Fashion-MNIST). Defaults to 3.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(
        self, arch: str, C: int = 16, N: int = 5, in_channels: int = 3, init_cfg=None
    ):
        super().__init__(init_cfg)
        self.net = TinyNetwork(parse_nb201(arch), C, N, 0, in_channels)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """Return ``(pooled features,)``, shape ``(B, 4C)``."""
        return (self.net(x),)
