"""BatchNorm over the channel (last) dimension of transformer tokens: the
foldable baseline UN is compared with (``norm_cfg=dict(type='TokenBN')``)."""

from torch import Tensor, nn

from mmcompress.registry import MODELS


@MODELS.register_module(name='TokenBN')
class TokenBN(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on tokens ``(B, N, C)`` / ``(N, C)``: statistics per
    channel over every token of the batch, the same parameters and buffers as
    ``BatchNorm1d(C)``.

    Args:
        num_features (int): Channels ``C``.
        **kwargs: ``eps``, ``momentum``, ``affine``, ``track_running_stats``
            of ``nn.BatchNorm1d``.
    """

    _abbr_ = 'bn'

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() not in (2, 3) or x.shape[-1] != self.num_features:
            raise ValueError(
                f'TokenBN({self.num_features}) normalises the last dimension of '
                f'tokens (B, N, {self.num_features}), got {tuple(x.shape)}'
            )
        return super().forward(x.reshape(-1, self.num_features)).reshape(x.shape)
