"""mmseg ResNet / HRNet whose BasicBlocks take mmcv plugins (Polarized Self-Attention).

mmseg's ``Bottleneck`` already takes ``plugins``; its ``BasicBlock`` asserts
``plugins is None``. ``SegPSAResNet`` builds its BasicBlock stages from
:class:`SegPluginBasicBlock`, so ``plugins=`` works for ResNet-18/34 as it does for
ResNet-50+; ``SegPSAHRNet`` puts ``plugins`` (default: the official PSA_s after
conv1) into every BasicBlock of an HRNet. Parameter names are those of the plain
backbones plus the plugins', so plain checkpoints load (the PSA weights are then
reported as newly initialised).
"""

from typing import Optional, Sequence

from mmseg.models.backbones.hrnet import HRNet
from mmseg.models.backbones.resnet import BasicBlock, ResNet

from mmcompress.registry import MODELS

from .psa_blocks import (
    OFFICIAL_HRNET_PLUGINS,
    PluginBlockFactory,
    PluginBlockMixin,
    reinit_psa,
)


class SegPluginBasicBlock(PluginBlockMixin, BasicBlock):
    """mmseg ``BasicBlock`` with ``plugins`` after conv1 and/or conv2.

    Args:
        plugins (list[dict], optional): ``dict(cfg=..., position=...)`` items,
            positions ``after_conv1`` / ``after_conv2``.
        **kwargs: The arguments of mmseg's ``BasicBlock``.
    """

    num_convs = 2

    def __init__(
        self, *args, plugins: Optional[Sequence[dict]] = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.build_plugins(plugins)


@MODELS.register_module()
class SegPSAResNet(ResNet):
    """mmseg ``ResNet`` whose ``plugins`` also reach BasicBlocks (ResNet-18/34).

    Same arguments as mmseg's ``ResNet`` (``deep_stem=True`` gives ResNetV1c).
    The official PSA initialisation is restored after the backbone's own.
    """

    def make_res_layer(self, **kwargs):
        """Build a stage, with plugin-capable BasicBlocks."""
        if kwargs['block'] is BasicBlock:
            kwargs['block'] = SegPluginBasicBlock
        return super().make_res_layer(**kwargs)

    def init_weights(self) -> None:
        """Backbone init, then the official PSA init (unless Pretrained)."""
        super().init_weights()
        reinit_psa(self)


@MODELS.register_module()
class SegPSAHRNet(HRNet):
    """mmseg ``HRNet`` with ``plugins`` in every BasicBlock.

    Args:
        plugins (list[dict]): Plugins of every BasicBlock. Defaults to the
            official placement: ``PolarizedSelfAttention(mode='sequential')``
            after conv1.
        **kwargs: The arguments of mmseg's ``HRNet``.
    """

    def __init__(
        self, *args, plugins: Sequence[dict] = OFFICIAL_HRNET_PLUGINS, **kwargs
    ) -> None:
        # HRNet reads its block table during __init__; an instance table
        # shadows the class one (a plain dict may be set before Module init)
        self.blocks_dict = dict(
            HRNet.blocks_dict,
            BASIC=PluginBlockFactory(
                SegPluginBasicBlock, plugins, BasicBlock.expansion
            ),
        )
        super().__init__(*args, **kwargs)

    def init_weights(self) -> None:
        """Backbone init, then the official PSA init (unless Pretrained)."""
        super().init_weights()
        reinit_psa(self)
