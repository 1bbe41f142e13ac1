"""mmpose ResNet / HRNet whose blocks take mmcv plugins (Polarized Self-Attention).

mmpose's ResNet blocks take no ``plugins`` at all. ``PosePSAResNet`` adds mmseg's
``plugins=`` argument (``dict(cfg=..., position=..., stages=...)``) to mmpose's
ResNet, for BasicBlocks and Bottlenecks; ``PosePSAHRNet`` puts ``plugins`` (default:
the official PSA_s after conv1) into every BasicBlock of an HRNet. Parameter names
are those of the plain backbones plus the plugins', so plain checkpoints load (the
PSA weights are then reported as newly initialised).
"""

from typing import List, Optional, Sequence

from mmpose.models.backbones.hrnet import HRNet
from mmpose.models.backbones.resnet import BasicBlock, Bottleneck, ResNet

from mmcompress.registry import MODELS

from .psa_blocks import (
    OFFICIAL_HRNET_PLUGINS,
    PluginBlockFactory,
    PluginBlockMixin,
    reinit_psa,
)


class PosePluginBasicBlock(PluginBlockMixin, BasicBlock):
    """mmpose ``BasicBlock`` with ``plugins`` (``after_conv1`` / ``after_conv2``).

    Args:
        plugins (list[dict], optional): ``dict(cfg=..., position=...)`` items.
        **kwargs: The arguments of mmpose's ``BasicBlock``.
    """

    num_convs = 2

    def __init__(
        self, *args, plugins: Optional[Sequence[dict]] = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.build_plugins(plugins)


class PosePluginBottleneck(PluginBlockMixin, Bottleneck):
    """mmpose ``Bottleneck`` with ``plugins`` (``after_conv1`` .. ``after_conv3``).

    Args:
        plugins (list[dict], optional): ``dict(cfg=..., position=...)`` items.
        **kwargs: The arguments of mmpose's ``Bottleneck``.
    """

    num_convs = 3

    def __init__(
        self, *args, plugins: Optional[Sequence[dict]] = None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.build_plugins(plugins)


PLUGIN_BLOCKS = {BasicBlock: PosePluginBasicBlock, Bottleneck: PosePluginBottleneck}


@MODELS.register_module()
class PosePSAResNet(ResNet):
    """mmpose ``ResNet`` with mmseg's ``plugins`` argument.

    Args:
        plugins (list[dict], optional): ``dict(cfg=..., position=...,
            stages=(bool, ...))`` items; without ``stages`` a plugin goes into
            every stage.
        **kwargs: The arguments of mmpose's ``ResNet``.
    """

    def __init__(
        self, *args, plugins: Optional[Sequence[dict]] = None, **kwargs
    ) -> None:
        self.plugins = list(plugins or ())
        num_stages = kwargs.get('num_stages', 4)
        for plugin in self.plugins:
            stages = plugin.get('stages') if isinstance(plugin, dict) else None
            if stages is not None and len(stages) != num_stages:
                raise ValueError(
                    f'PosePSAResNet: plugin stages={stages} must have one flag per '
                    f'stage ({num_stages})'
                )
        super().__init__(*args, **kwargs)

    def _stage_plugins(self, stage: int) -> List[dict]:
        chosen = []
        for plugin in self.plugins:
            plugin = dict(plugin)
            stages = plugin.pop('stages', None)
            if stages is None or stages[stage]:
                chosen.append(plugin)
        return chosen

    def make_res_layer(self, **kwargs):
        """Build a stage from plugin-capable blocks with this stage's plugins."""
        stage = len(self.res_layers)  # ResNet appends each built stage
        kwargs['block'] = PLUGIN_BLOCKS.get(kwargs['block'], kwargs['block'])
        return super().make_res_layer(plugins=self._stage_plugins(stage), **kwargs)

    def init_weights(self) -> None:
        """Backbone init, then the official PSA init (unless Pretrained)."""
        super().init_weights()
        reinit_psa(self)


@MODELS.register_module()
class PosePSAHRNet(HRNet):
    """mmpose ``HRNet`` with ``plugins`` in every BasicBlock.

    Args:
        plugins (list[dict]): Plugins of every BasicBlock. Defaults to the
            official placement: ``PolarizedSelfAttention(mode='sequential')``
            after conv1.
        **kwargs: The arguments of mmpose's ``HRNet``.
    """

    def __init__(
        self, *args, plugins: Sequence[dict] = OFFICIAL_HRNET_PLUGINS, **kwargs
    ) -> None:
        # HRNet reads its block table during __init__; an instance table
        # shadows the class one (a plain dict may be set before Module init)
        self.blocks_dict = dict(
            HRNet.blocks_dict,
            BASIC=PluginBlockFactory(PosePluginBasicBlock, plugins, 1),
        )
        super().__init__(*args, **kwargs)

    def init_weights(self) -> None:
        """Backbone init, then the official PSA init (unless Pretrained)."""
        super().init_weights()
        reinit_psa(self)
