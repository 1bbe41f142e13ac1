"""The decomposed conv layer that replaces an ``nn.Conv2d`` in place.

It is an ``nn.Sequential`` of plain convs (so quantization, FLOPs counting and
ONNX export see ordinary ``Conv2d`` layers) whose keys are ``<name>.0.weight``,
``<name>.1.weight``... Two empty buffers keep the float layer's keys
``<name>.weight`` / ``<name>.bias`` as load targets: loading a checkpoint of
the *undecomposed* model (``load_from``, a DistillModel student, an
``init_cfg``) factorises the float weight into the parts (the initialisation
from trained weights); a checkpoint of the decomposed model loads its parts
as they are.
"""

from typing import Sequence

import torch
from torch import Tensor, nn

from .factorize import group_factors, tucker2_factors

METHODS = ('group', 'svd', 'tucker2')


def _conv(cin, cout, kernel, source, groups=1, bias=False, spatial=True):
    """A part conv: k x k with the source's stride / padding, or 1x1."""
    if spatial:
        return nn.Conv2d(
            cin,
            cout,
            kernel,
            source.stride,
            source.padding,
            source.dilation,
            groups=groups,
            bias=bias,
            padding_mode=source.padding_mode,
        )
    return nn.Conv2d(cin, cout, 1, bias=bias)


class DecomposedConv2d(nn.Sequential):
    """A conv replaced by a sequence of cheaper convs.

    Args:
        conv (nn.Conv2d): The layer being replaced (its shape, stride and
            padding; its weights are used when ``init_from_weights``).
        method (str): ``'group'`` (group conv + 1x1 mixing), ``'svd'``
            (k x k to rank r + 1x1) or ``'tucker2'`` (1x1 + k x k core + 1x1).
        ranks (Sequence[int]): ``(groups, rank)`` for ``'group'``,
            ``(rank,)`` for ``'svd'``, ``(rank_in, rank_out)`` for
            ``'tucker2'``.
        init_from_weights (bool): Factorise ``conv.weight`` now. Defaults to
            True.
    """

    # the placeholders ``weight`` / ``bias`` are load targets only: a float
    # checkpoint's tensors there are factorised into the parts, a decomposed
    # checkpoint holds them empty (mmcompress.utils.load_check)
    checkpoint_optional_state = ('weight', 'bias')

    def __init__(
        self,
        conv: nn.Conv2d,
        method: str,
        ranks: Sequence[int],
        init_from_weights: bool = True,
    ) -> None:
        o, i, k = conv.out_channels, conv.in_channels, conv.kernel_size
        has_bias = conv.bias is not None
        if method == 'group':
            groups, rank = ranks
            parts = [
                _conv(i, groups * rank, k, conv, groups=groups),
                _conv(groups * rank, o, 1, conv, bias=has_bias, spatial=False),
            ]
        elif method == 'svd':
            (rank,) = ranks
            parts = [
                _conv(i, rank, k, conv),
                _conv(rank, o, 1, conv, bias=has_bias, spatial=False),
            ]
        else:
            rank_in, rank_out = ranks
            parts = [
                _conv(i, rank_in, 1, conv, spatial=False),
                _conv(rank_in, rank_out, k, conv),
                _conv(rank_out, o, 1, conv, bias=has_bias, spatial=False),
            ]
        super().__init__(*parts)
        self.method, self.ranks = method, tuple(int(r) for r in ranks)
        self.in_channels, self.out_channels = i, o
        self.kernel_size, self.stride = k, conv.stride
        self.source_weight_shape = tuple(conv.weight.shape)
        self.source_has_bias = has_bias
        self.register_buffer('weight', torch.zeros(0))
        self.register_buffer('bias', torch.zeros(0))
        if init_from_weights:
            self.init_from(conv.weight.detach(), conv.bias)

    def extra_repr(self) -> str:
        return f'method={self.method!r}, ranks={self.ranks}'

    @torch.no_grad()
    def init_from(self, weight: Tensor, bias=None) -> None:
        """Set the parts from the float layer's weight (and bias).

        Args:
            weight (Tensor): ``(O, I, k, k)``.
            bias (Tensor, optional): ``(O,)``.
        """
        if self.method == 'group':
            weights = group_factors(weight, *self.ranks)
        elif self.method == 'svd':
            weights = group_factors(weight, 1, self.ranks[0])
        else:
            weights = tucker2_factors(weight, *self.ranks)
        for part, value in zip(self, weights):
            part.weight.copy_(value)
        if bias is not None:
            self[-1].bias.copy_(bias)

    def _load_from_state_dict(
        self, state_dict, prefix, metadata, strict, missing, unexpected, errors
    ):
        weight = state_dict.pop(prefix + 'weight', None)
        bias = state_dict.pop(prefix + 'bias', None)
        float_layer = (
            weight is not None and tuple(weight.shape) == self.source_weight_shape
        )
        if float_layer:
            # a checkpoint of the undecomposed model: factorise its weight
            bias = bias if self.source_has_bias else None
            self.init_from(weight.to(self[0].weight), bias)
            for key, value in self.state_dict(prefix=prefix).items():
                state_dict[key] = value
        super()._load_from_state_dict(
            state_dict, prefix, metadata, strict, missing, unexpected, errors
        )
        for key in (prefix + 'weight', prefix + 'bias'):
            if key in missing:
                missing.remove(key)

    def forward(self, x: Tensor) -> Tensor:
        for part in self:
            x = part(x)
        return x
