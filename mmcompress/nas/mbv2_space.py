"""A MobileNetV2-style space (depth, kernel and expansion per stage) and its backbone.

An architecture is, per stage, a ``(depth, kernel, expand)`` choice; the text form
joins the stages with ``-``, e.g. ``'d2k3e6-d1k5e3-d3k3e3-d1k5e6'``. Stage widths
and strides are fixed (``widths``, ``strides``); the first block of a stage has the
stage's stride, later blocks are residual. Blocks are MobileNetV2 inverted
residuals: 1x1 expand, depthwise kxk, 1x1 project, BN after each, ReLU6 after the
first two.
"""

import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmcompress.registry import MODELS

from .space import SearchSpace

DEPTHS, KERNELS, EXPANDS = (1, 2, 3), (3, 5), (3, 6)
_STAGE = re.compile(r'^d(\d+)k(\d+)e(\d+)$')


def _conv_bn(c_in, c_out, k, stride=1, groups=1, act=True) -> List[nn.Module]:
    layers = [
        nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    """MobileNetV2 block; residual when stride 1 and widths match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        self.block = nn.Sequential(
            *_conv_bn(c_in, hidden, 1),
            *_conv_bn(hidden, hidden, kernel, stride, groups=hidden),
            *_conv_bn(hidden, c_out, 1, act=False),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetSpaceNet(nn.Module):
    """The network of one :class:`MobileNetSpace` architecture.

    Args:
        arch (Sequence[tuple]): ``(depth, kernel, expand)`` per stage.
        widths (Sequence[int]): Output channels per stage.
        strides (Sequence[int]): Stride of each stage's first block.
        stem (int): Stem channels. Defaults to 16.
        num_classes (int): Classifier outputs; 0 for none. Defaults to 10.
        in_channels (int): Input channels. Defaults to 3.
    """

    def __init__(self, arch, widths, strides, stem=16, num_classes=10, in_channels=3):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, stem, 3))
        blocks, c = [], stem
        for (depth, kernel, expand), width, stride in zip(arch, widths, strides):
            for i in range(depth):
                blocks.append(
                    InvertedResidual(c, width, kernel, expand, stride if i == 0 else 1)
                )
                c = width
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = c
        self.classifier = nn.Linear(c, num_classes) if num_classes else None

    def extract_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The stem output and every block output."""
        feats = [self.stem(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (pooled features if ``num_classes=0``)."""
        out = self.extract_features(x)[-1].mean(dim=(2, 3))
        return self.classifier(out) if self.classifier is not None else out


class MobileNetSpace(SearchSpace):
    """Per-stage depth / kernel / expansion choices over a MobileNetV2 layout.

    Args:
        widths (Sequence[int]): Stage widths. Defaults to (16, 24, 32, 64).
        strides (Sequence[int]): Stage strides. Defaults to (1, 2, 2, 1).
        stem (int): Stem channels. Defaults to 16.
        in_channels (int): Input channels (1 for Fashion-MNIST). Defaults to 1.
        resolution (int): Input side for FLOPs and proxies. Defaults to 28.
    """

    name = 'mbv2'

    def __init__(
        self,
        widths=(16, 24, 32, 64),
        strides=(1, 2, 2, 1),
        stem=16,
        in_channels=1,
        resolution=28,
    ):
        if len(widths) != len(strides):
            raise ValueError(
                f'MobileNetSpace needs one stride per stage, got {len(widths)} widths '
                f'and {len(strides)} strides'
            )
        self.widths, self.strides = tuple(widths), tuple(strides)
        self.stem, self.in_channels, self.resolution = stem, in_channels, resolution
        self.input_shape = (in_channels, resolution, resolution)
        self._flops: Dict[tuple, int] = {}

    def check(self, arch) -> Tuple[Tuple[int, int, int], ...]:
        """Return ``arch`` as a tuple of valid ``(depth, kernel, expand)``."""
        arch = tuple(tuple(int(v) for v in stage) for stage in arch)
        ok = len(arch) == len(self.widths) and all(
            len(s) == 3 and s[0] in DEPTHS and s[1] in KERNELS and s[2] in EXPANDS
            for s in arch
        )
        if not ok:
            raise ValueError(
                f'MobileNetSpace arch must be {len(self.widths)} (depth, kernel, '
                f'expand) triples with depth in {DEPTHS}, kernel in {KERNELS}, '
                f'expand in {EXPANDS}, got {arch}'
            )
        return arch

    def sample(self, rng: np.random.Generator):
        """One architecture with uniformly random choices."""
        return tuple(
            (
                int(rng.choice(DEPTHS)),
                int(rng.choice(KERNELS)),
                int(rng.choice(EXPANDS)),
            )
            for _ in self.widths
        )

    def mutate(self, arch, rng: np.random.Generator):
        """Change one choice of one stage to another value."""
        arch = [list(s) for s in self.check(arch)]
        stage, field = int(rng.integers(len(arch))), int(rng.integers(3))
        options = [
            v for v in (DEPTHS, KERNELS, EXPANDS)[field] if v != arch[stage][field]
        ]
        arch[stage][field] = int(rng.choice(options))
        return tuple(tuple(s) for s in arch)

    def encode(self, arch) -> np.ndarray:
        """Normalised choices per stage (3 values per stage)."""
        return np.array(
            [[d / 3, k / 5, e / 6] for d, k, e in self.check(arch)], dtype=np.float32
        ).reshape(-1)

    def flops(self, arch) -> int:
        """FLOPs of ``arch`` (counted on the built network, cached)."""
        arch = self.check(arch)
        if arch not in self._flops:
            self._flops[arch] = super().flops(arch)
        return self._flops[arch]

    def min_flops(self) -> int:
        """FLOPs of the cheapest architecture (depth 1, kernel 3, expand 3)."""
        return self.flops(((1, 3, 3),) * len(self.widths))

    def build(self, arch, num_classes: int = 10) -> nn.Module:
        """The network of ``arch``."""
        return MobileNetSpaceNet(
            self.check(arch),
            self.widths,
            self.strides,
            self.stem,
            num_classes,
            self.in_channels,
        )

    def to_str(self, arch) -> str:
        """``'d2k3e6-d1k5e3-...'``."""
        return '-'.join(f'd{d}k{k}e{e}' for d, k, e in self.check(arch))

    def from_str(self, text: str):
        """Parse the text written by :meth:`to_str`."""
        stages = []
        for part in str(text).split('-'):
            m = _STAGE.match(part)
            if not m:
                raise ValueError(
                    f'MobileNetSpace arch string {text!r}: stage {part!r} must read '
                    f'd<depth>k<kernel>e<expand>, e.g. d2k3e6'
                )
            stages.append(tuple(int(g) for g in m.groups()))
        return self.check(stages)

    def backbone_cfg(self, arch) -> Dict:
        """The ``MobileNetSpaceBackbone`` config dict of ``arch``."""
        return dict(
            type='MobileNetSpaceBackbone',
            arch=self.to_str(arch),
            widths=self.widths,
            strides=self.strides,
            stem=self.stem,
            in_channels=self.in_channels,
        )


@MODELS.register_module()
class MobileNetSpaceBackbone(BaseModule):
    """A :class:`MobileNetSpace` architecture as an mmpretrain backbone.

    Args:
        arch (str): Text form, e.g. ``'d2k3e6-d1k5e3-d3k3e3-d1k5e6'``.
        widths (Sequence[int]): Stage widths. Defaults to (16, 24, 32, 64).
        strides (Sequence[int]): Stage strides. Defaults to (1, 2, 2, 1).
        stem (int): Stem channels. Defaults to 16.
        in_channels (int): Input channels. Defaults to 1.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(
        self,
        arch: str,
        widths: Sequence[int] = (16, 24, 32, 64),
        strides: Sequence[int] = (1, 2, 2, 1),
        stem: int = 16,
        in_channels: int = 1,
        init_cfg=None,
    ):
        super().__init__(init_cfg)
        space = MobileNetSpace(widths, strides, stem, in_channels)
        self.net = space.build(space.from_str(arch), num_classes=0)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        """``(pooled features,)``."""
        return (self.net(x),)
