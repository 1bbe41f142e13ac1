"""Shared pieces of the PSA backbones: plugin-capable residual blocks and the init rule.

mmseg's and mmpose's ``BasicBlock`` (and mmpose's ``Bottleneck``) take no ``plugins``;
:class:`PluginBlockMixin` adds the mmcv plugin grammar to them
(``dict(cfg=dict(type=...), position='after_convK')``), with the placement of
mmseg's ``Bottleneck``: a plugin ``after_convK`` runs on the output of conv K, its
norm and (for all but the last conv) its ReLU. The official PSA code inserts PSA_s
``after_conv1`` of every HRNet ``BasicBlock``.
"""

from typing import Dict, List, Optional, Sequence

import torch.utils.checkpoint as cp
from mmcv.cnn import build_plugin_layer
from torch import Tensor

from mmcompress.models.plugins import PolarizedSelfAttention


def _plugin_positions(num_convs: int) -> List[str]:
    return [f'after_conv{k}' for k in range(1, num_convs + 1)]


class PluginBlockMixin:
    """Adds ``plugins`` to a residual block with ``conv1..convN`` / ``norm1..normN``.

    The subclass lists the mixin first and the downstream block second, sets
    ``num_convs`` and calls :meth:`build_plugins` at the end of ``__init__``.
    """

    num_convs: int = 2

    def build_plugins(self, plugins: Optional[Sequence[dict]]) -> None:
        """Build the plugins after each conv.

        Args:
            plugins (list[dict], optional): ``dict(cfg=..., position=...)`` items;
                ``position`` is ``after_conv1`` .. ``after_conv<num_convs>``.
        """
        valid = _plugin_positions(self.num_convs)
        self.plugin_names: Dict[str, List[str]] = {p: [] for p in valid}
        for plugin in plugins or ():
            if (
                not isinstance(plugin, dict)
                or set(plugin) - {'cfg', 'position'}
                or 'cfg' not in plugin
            ):
                raise ValueError(
                    f'{type(self).__name__}: a plugin is dict(cfg=dict(type=...), '
                    f"position='after_conv1'), got {plugin!r}"
                )
            position = plugin.get('position')
            if position not in valid:
                raise ValueError(
                    f'{type(self).__name__} has {self.num_convs} convs: plugin '
                    f'position {position!r} is not supported (valid: {valid})'
                )
            conv = getattr(self, f'conv{position[-1]}')
            cfg = dict(plugin['cfg'])
            name, layer = build_plugin_layer(
                cfg, postfix=cfg.pop('postfix', ''), in_channels=conv.out_channels
            )
            if hasattr(self, name):
                raise ValueError(
                    f'{type(self).__name__}: two plugins are both named {name!r}; '
                    f"give them distinct cfg=dict(..., postfix='1') values"
                )
            self.add_module(name, layer)
            self.plugin_names[position].append(name)

    def forward(self, x: Tensor) -> Tensor:
        """conv-norm(-ReLU)-plugins per conv, then the residual and a ReLU."""

        def inner(x: Tensor) -> Tensor:
            out = x
            for k in range(1, self.num_convs + 1):
                out = getattr(self, f'norm{k}')(getattr(self, f'conv{k}')(out))
                if k < self.num_convs:
                    out = self.relu(out)
                for name in self.plugin_names[f'after_conv{k}']:
                    out = getattr(self, name)(out)
            identity = x if self.downsample is None else self.downsample(x)
            return out + identity

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(inner, x, use_reentrant=False)
        else:
            out = inner(x)
        return self.relu(out)


class PluginBlockFactory:
    """What an HRNet block table holds: a block class with bound ``plugins``.

    HRNet builds blocks as ``block(in_channels, channels, ...)`` and reads
    ``block.expansion``; this callable does both for ``block`` with ``plugins``.

    Args:
        block (type): A :class:`PluginBlockMixin` block class.
        plugins (list[dict]): The plugins every block gets.
        expansion (int): The block's expansion.
    """

    def __init__(self, block: type, plugins: Sequence[dict], expansion: int) -> None:
        self.block = block
        self.plugins = list(plugins)
        self.expansion = expansion

    def __call__(self, *args, **kwargs):
        return self.block(*args, plugins=self.plugins, **kwargs)


# Official placement: PSA_s after conv1 of every HRNet BasicBlock (hrnetv2.py).
OFFICIAL_HRNET_PLUGINS = (
    dict(
        cfg=dict(type='PolarizedSelfAttention', mode='sequential', impl='official'),
        position='after_conv1',
    ),
)


def reinit_psa(backbone) -> None:
    """Re-apply the official PSA initialisation after a backbone's own init.

    Layer-type initialisers (``dict(type='Kaiming', layer='Conv2d')``) and
    mmpose's HRNet re-initialise every ``Conv2d`` of the backbone, PSA's included.
    With a ``Pretrained`` init_cfg nothing is re-initialised (PSA weights in the
    checkpoint are kept; missing ones keep their construction-time init).

    Args:
        backbone (BaseModule): The backbone, after its ``init_weights``.
    """
    init_cfg = backbone.init_cfg
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    if any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs):
        return
    for module in backbone.modules():
        if isinstance(module, PolarizedSelfAttention):
            module.reset_parameters()
