"""Polarized Self-Attention (Liu et al., arXiv 2107.00782), an mmcv-style plugin.

For ``x`` of shape ``C x H x W`` (``C2 = C / 2``; ``Wq``, ``Wv``, ``Wz`` are 1x1 convs)
the two branches are::

    channel-only:  A_ch = sigmoid(F_ch(Wv(x)[C2 x HW] @ softmax_HW(Wq(x)[1 x HW])^T))
                   Z_ch = A_ch * x                                    # A_ch: C x 1 x 1
    spatial-only:  A_sp = sigmoid(G(GAP(Wq'(x))[1 x C2], Wv'(x)[C2 x HW]))
                   Z_sp = A_sp * x                                    # A_sp: 1 x H x W

and the layouts are ``parallel: Z_ch(x) + Z_sp(x)`` and ``sequential: Z_sp(Z_ch(x))``.
There is no residual connection inside the block; the insertion point provides it.
``F_ch`` and ``G`` depend on ``impl``:

=================  ==========================================  =======================
``impl``            ``F_ch`` (channel branch, C2 -> C)           ``G`` (spatial branch)
=================  ==========================================  =======================
``'paper'``         ``LN_C(Wz(.))``                              ``softmax_C2(q) @ v``
``'official'`` p    ``Wz(.)`` (no LayerNorm, no bias)            ``softmax_HW(q @ v)``
``'official'`` s    ``Conv(C2->C2/4) LN ReLU Conv(C2/4->C)``     ``q @ softmax_HW(v)``
=================  ==========================================  =======================

The official rows follow ``PSA_p`` / ``PSA_s`` of DeLightCMU/PSA
(``semantic-segmentation/network/PSA.py``), whose ``spatial_pool`` is the channel-only
branch and ``channel_pool`` the spatial-only one. Initialisation follows that file too:
Kaiming normal (fan-in, ReLU gain) for the query/value convs, PyTorch's default for
the ``Wz`` path, unit/zero LayerNorms. The q/v convs have no bias.

The bias-free q/v convs are linear, so the block applies them where they are
cheapest, with equal results up to rounding: ``GAP(Wq'(x)) = Wq'(GAP(x))``,
``Wv(x) @ q = Wv(x @ q)`` and ``q @ Wv'(x) = (q Wv') @ x``. Only the official
sequential spatial branch, whose softmax acts on ``Wv'(x)`` itself, runs a
full-resolution convolution. The convolutions that act on 1x1 maps (``Wz``) run
as linear maps on vectors; the softmax-weighted pooling and the final products
(``x * (A_ch + A_sp)``, the sequential chain) run on the fused CPU kernels of
:mod:`.psa_kernels` in training (``fused=True``), else as element-wise products
and sums (on CPU a batched matrix-vector product, and the backward of ``mean``,
cost several times more).
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from mmcompress.registry import MODELS

from .psa_kernels import psa_combine, psa_pool

MODES = ('parallel', 'sequential')
IMPLS = ('official', 'paper')
# the official sequential channel branch narrows C/2 by this ratio
OFFICIAL_SEQUENTIAL_RATIO = 4


def required_divisor(mode: str, impl: str) -> int:
    """Channel count a PSA block of this layout needs its input divisible by.

    Args:
        mode (str): ``'parallel'`` or ``'sequential'``.
        impl (str): ``'official'`` or ``'paper'``.

    Returns:
        int: 8 for the official sequential block (C/2 narrowed by 4), else 2.
    """
    if impl == 'official' and mode == 'sequential':
        return 2 * OFFICIAL_SEQUENTIAL_RATIO
    return 2


def _conv1x1(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)


@MODELS.register_module()
class PolarizedSelfAttention(BaseModule):
    """Polarized Self-Attention block (PSA_p / PSA_s), shape-preserving.

    Usable as an mmcv plugin: ``plugins=[dict(cfg=dict(type='PolarizedSelfAttention',
    mode='parallel'), position='after_conv1')]`` (``in_channels`` is filled in by
    ``mmcv.cnn.build_plugin_layer``); the plugin's attribute name is ``psa``.

    Args:
        in_channels (int): Channels ``C`` of the input (and output).
        mode (str): ``'parallel'`` (PSA_p) or ``'sequential'`` (PSA_s).
            Defaults to ``'parallel'``.
        impl (str): ``'official'`` (the released code, default) or ``'paper'``
            (the paper's equations); see the module docstring for the differences.
        fused (bool): Run the full-resolution element-wise steps on the fused
            CPU kernels of :mod:`~mmcompress.models.plugins.psa_kernels` where
            they apply (training on CPU, float32 / float64); False: always the
            eager expressions. Same values up to the order of summation.
            Defaults to False.
        init_cfg (dict, optional): mmengine init config. Defaults to None, which
            keeps the official initialisation.
    """

    # inserted into pretrained networks: a plain-model checkpoint lacks these
    # weights on load_from (mmcompress.utils.load_check); they keep their init
    checkpoint_optional_state = True

    _abbr_ = 'psa'

    def __init__(
        self,
        in_channels: int,
        mode: str = 'parallel',
        impl: str = 'official',
        fused: bool = False,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg)
        if mode not in MODES:
            raise ValueError(
                f'PolarizedSelfAttention: unknown mode={mode!r}; valid modes are '
                f'{MODES} (parallel = PSA_p, sequential = PSA_s)'
            )
        if impl not in IMPLS:
            raise ValueError(
                f'PolarizedSelfAttention: unknown impl={impl!r}; valid values are '
                f'{IMPLS} (official = the released code, paper = the equations)'
            )
        if not isinstance(fused, bool):
            raise TypeError(
                f'PolarizedSelfAttention: fused must be True (fused CPU kernels '
                f'where they apply) or False (eager), got {fused!r} '
                f'({type(fused).__name__})'
            )
        divisor = required_divisor(mode, impl)
        if (
            not isinstance(in_channels, int)
            or in_channels < divisor
            or in_channels % divisor
        ):
            raise ValueError(
                f'PolarizedSelfAttention(mode={mode!r}, impl={impl!r}) needs '
                f'in_channels divisible by {divisor}, got {in_channels!r}; insert '
                f'it where the block has a multiple of {divisor} channels'
                + (
                    " or use mode='parallel' (needs a multiple of 2)"
                    if divisor > 2
                    else ''
                )
            )
        self.in_channels = in_channels
        self.mode = mode
        self.impl = impl
        self.fused = fused
        half = in_channels // 2
        # channel-only branch (official name: spatial_pool / *_right)
        self.ch_wq = _conv1x1(in_channels, 1)
        self.ch_wv = _conv1x1(in_channels, half)
        if impl == 'official' and mode == 'sequential':
            narrow = half // OFFICIAL_SEQUENTIAL_RATIO
            self.ch_wz = nn.Sequential(
                _conv1x1(half, narrow, bias=True),
                nn.LayerNorm([narrow, 1, 1]),
                nn.ReLU(inplace=True),
                _conv1x1(narrow, in_channels, bias=True),
            )
        else:
            self.ch_wz = _conv1x1(half, in_channels)
        self.ch_norm = nn.LayerNorm(in_channels) if impl == 'paper' else None
        # spatial-only branch (official name: channel_pool / *_left)
        self.sp_wq = _conv1x1(in_channels, half)
        self.sp_wv = _conv1x1(in_channels, half)
        self.reset_parameters()

    def init_weights(self) -> None:
        """mmengine's hook: the backbone's init, then :meth:`reset_parameters`."""
        super().init_weights()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation (see the module docstring).

        The PSA backbones call it again after their own initialisers, which
        would otherwise overwrite these convs with the backbone's scheme.
        """
        for conv in (self.ch_wq, self.ch_wv, self.sp_wq, self.sp_wv):
            nn.init.kaiming_normal_(conv.weight, mode='fan_in', nonlinearity='relu')
        for module in self.ch_wz.modules():
            if isinstance(module, (nn.Conv2d, nn.LayerNorm)):
                module.reset_parameters()
        if self.ch_norm is not None:
            self.ch_norm.reset_parameters()

    @staticmethod
    def _matrix(conv: nn.Conv2d) -> Tensor:
        """A 1x1 conv's weight as an ``(out, in)`` matrix."""
        return conv.weight.view(conv.out_channels, conv.in_channels)

    @staticmethod
    def _conv_flat(matrix: Tensor, flat: Tensor) -> Tensor:
        """A bias-free 1x1 conv given as ``matrix`` on ``flat`` ``(N, C, HW)``."""
        return torch.bmm(matrix.expand(flat.shape[0], -1, -1), flat)

    def _channel_from_vector(self, context: Tensor) -> Tensor:
        """``A_ch`` ``(N, C)`` from ``Wv(x) @ q`` ``(N, C/2)``: ``F_ch`` and the
        sigmoid, its convolutions acting on 1x1 maps written as linear maps."""
        if isinstance(self.ch_wz, nn.Conv2d):
            out = F.linear(context, self._matrix(self.ch_wz))
        else:  # official sequential: Conv -> LayerNorm -> ReLU -> Conv
            up, norm, _, down = self.ch_wz
            hidden = F.linear(context, self._matrix(up), up.bias)
            hidden = F.layer_norm(
                hidden,
                hidden.shape[1:],
                norm.weight.flatten(),
                norm.bias.flatten(),
                norm.eps,
            )
            out = F.linear(hidden.relu(), self._matrix(down), down.bias)
        if self.ch_norm is not None:
            out = self.ch_norm(out)
        return out.sigmoid()

    def _channel_from_logits(self, flat: Tensor, logits: Tensor) -> Tensor:
        """``A_ch`` ``(N, C)`` from the input ``(N, C, HW)`` and ``Wq(x)``
        ``(N, HW)``."""
        query = logits.softmax(dim=1)
        # Wv(x) @ q == Wv(x @ q): apply Wv to the softmax-pooled C-vector
        pooled = psa_pool(flat, query, self.fused)  # N, C
        return self._channel_from_vector(F.linear(pooled, self._matrix(self.ch_wv)))

    def _spatial_query(self, flat: Tensor) -> Tensor:
        """``GAP(Wq'(x))`` ``(N, C/2)``, as ``Wq'(GAP(x))`` (linear, no bias)."""
        # sum / HW: the backward of mean() divides a full-size tensor
        mean = flat.sum(dim=2) / flat.shape[2]
        return F.linear(mean, self._matrix(self.sp_wq))

    def _spatial_row(self, flat: Tensor) -> Tensor:
        """``(N, C)`` row whose product with the input is the spatial logits
        (all layouts but the official sequential one)."""
        query = self._spatial_query(flat)  # N, C/2
        if self.impl == 'paper':
            query = query.softmax(dim=1)
        # q @ Wv(x) == (q Wv) @ x
        return torch.mm(query, self._matrix(self.sp_wv))

    def _spatial_from_logits(self, logits: Tensor) -> Tensor:
        """``A_sp`` ``(N, HW)`` from its logits ``(N, HW)``."""
        if self.impl == 'official' and self.mode == 'parallel':
            logits = logits.softmax(dim=1)
        return logits.sigmoid()

    def _channel(self, flat: Tensor) -> Tensor:
        """``A_ch`` ``(N, C)`` of the input ``(N, C, HW)``."""
        logits = self._conv_flat(self._matrix(self.ch_wq), flat)  # N, 1, HW
        return self._channel_from_logits(flat, logits.squeeze(1))

    def _spatial(self, flat: Tensor) -> Tensor:
        """``A_sp`` ``(N, HW)`` of the input ``(N, C, HW)``."""
        if self.impl == 'official' and self.mode == 'sequential':
            query = self._spatial_query(flat).unsqueeze(1)  # N, 1, C/2
            value = self._conv_flat(self._matrix(self.sp_wv), flat).softmax(dim=2)
            logits = torch.bmm(query, value)  # N, 1, HW
        else:
            logits = torch.bmm(self._spatial_row(flat).unsqueeze(1), flat)
        return self._spatial_from_logits(logits.squeeze(1))

    def channel_attention(self, x: Tensor) -> Tensor:
        """Channel-only attention ``A_ch`` of shape ``(N, C, 1, 1)``."""
        return self._channel(x.flatten(2))[..., None, None]

    def spatial_attention(self, x: Tensor) -> Tensor:
        """Spatial-only attention ``A_sp`` of shape ``(N, 1, H, W)``."""
        n, _, h, w = x.shape
        return self._spatial(x.flatten(2)).view(n, 1, h, w)

    def forward(self, x: Tensor) -> Tensor:
        """Apply PSA; the output has the shape of ``x``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'PolarizedSelfAttention(in_channels={self.in_channels}) expects '
                f'an (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}'
            )
        flat = x.flatten(2)
        if self.mode == 'sequential':
            flat = psa_combine(flat, self._channel(flat), None, self.fused)
            return psa_combine(flat, None, self._spatial(flat), self.fused).view_as(x)
        # parallel: both branches' logits in one product with the input, and
        # Z_ch + Z_sp == x * (A_ch + A_sp)
        rows = torch.cat(
            [
                self._matrix(self.ch_wq).expand(x.shape[0], 1, -1),
                self._spatial_row(flat).unsqueeze(1),
            ],
            dim=1,
        )  # N, 2, C
        logits = torch.bmm(rows, flat)  # N, 2, HW
        channel = self._channel_from_logits(flat, logits[:, 0])
        spatial = self._spatial_from_logits(logits[:, 1])
        return psa_combine(flat, channel, spatial, self.fused).view_as(x)

    def _load_from_state_dict(
        self,
        state_dict,
        prefix,
        local_metadata,
        strict,
        missing_keys,
        unexpected_keys,
        error_msgs,
    ) -> None:
        """Load, and log the PSA weights a (plain-model) checkpoint lacks."""
        super()._load_from_state_dict(
            state_dict,
            prefix,
            local_metadata,
            strict,
            missing_keys,
            unexpected_keys,
            error_msgs,
        )
        own = [key for key in self.state_dict(prefix=prefix) if key not in state_dict]
        if own:
            print_log(
                f'PolarizedSelfAttention {prefix.rstrip(".") or "(root)"}: '
                f'{len(own)} tensors not in the checkpoint keep their new '
                f'(official) initialisation: '
                f'{", ".join(key[len(prefix) :] for key in own)}',
                logger='current',
            )
