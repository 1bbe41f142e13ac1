"""Per-tensor, per-channel and group-wise layout of a quantizer's parameters.

A quantizer keeps one value of each range parameter per tensor (shape ``(1,)``),
per channel along ``channel_axis`` (``(C,)``) or per group of contiguous channels
(``(G,)``). :class:`ChannelGranularity` holds what depends on that choice: the
parameter shape, the group checks, expanding group values to channels,
broadcasting a parameter against the tensor and per-channel statistics for
data-driven initialization. :class:`~.base.BaseQuantizer` mixes it in; it reads
the attributes ``per_channel``, ``channel_axis``, ``num_channels`` and
``num_groups`` that ``BaseQuantizer.__init__`` sets.
"""

from typing import ClassVar

import torch
from torch import Tensor

from ..functions import stat_of_finite


class ChannelGranularity:
    """Mixin: the parameter layout helpers of :class:`~.base.BaseQuantizer`."""

    #: dtype of the :meth:`channel_stat` statistics (see
    #: :meth:`BaseQuantizer._initialize`)
    _stat_dtype: ClassVar[torch.dtype] = torch.float32

    @property
    def param_shape(self) -> tuple:
        """tuple: Shape of a per-tensor (``(1,)``), per-channel (``(C,)``) or
        group-wise (``(G,)``) quantizer parameter."""
        return (self.num_groups or self.num_channels,)

    def _check_groups(self, num_groups, per_channel, num_channels) -> None:
        name = type(self).__name__
        if isinstance(num_groups, bool) or not isinstance(num_groups, int):
            raise TypeError(f'{name}: num_groups must be an int, got {num_groups!r}')
        if not per_channel:
            raise ValueError(
                f'{name}: num_groups={num_groups} needs per_channel=True (groups '
                'of channels along channel_axis)'
            )
        if num_groups < 1 or int(num_channels) % num_groups:
            raise ValueError(
                f'{name}: num_groups={num_groups} must be >= 1 and divide the '
                f'{num_channels} channels'
            )

    def channel_param(self, param: Tensor) -> Tensor:
        """A ``param_shape`` parameter with one value per channel: group-wise
        values repeated over their group's channels; others unchanged.

        Args:
            param (Tensor): Shape ``param_shape``.

        Returns:
            Tensor: Shape ``(C,)`` (``(1,)`` per tensor).
        """
        if not self.num_groups:
            return param
        return param.repeat_interleave(self.num_channels // self.num_groups)

    def broadcast(self, param: Tensor, x: Tensor) -> Tensor:
        """View a ``(C,)`` or ``(1,)`` parameter so it broadcasts against ``x``.

        Args:
            param (Tensor): Quantizer parameter of shape ``param_shape``.
            x (Tensor): The tensor being quantized.

        Returns:
            Tensor: ``param`` reshaped to ``x.dim()`` dimensions.
        """
        if not self.per_channel:
            return param.reshape([1] * x.dim()) if x.dim() else param.reshape(())
        axis = self.checked_channel_axis(x)
        shape = [1] * x.dim()
        shape[axis] = self.num_channels
        return self.channel_param(param).reshape(shape)

    def checked_channel_axis(self, x: Tensor) -> int:
        """The non-negative channel axis of ``x``, checked to hold ``num_channels``.

        Args:
            x (Tensor): The tensor being quantized (``per_channel`` only).

        Returns:
            int: ``channel_axis`` modulo ``x.dim()``.
        """
        axis = self.channel_axis % x.dim()
        if x.shape[axis] != self.num_channels:
            raise ValueError(
                f'{type(self).__name__}: expected {self.num_channels} channels '
                f'along axis {self.channel_axis}, got a tensor of shape '
                f'{tuple(x.shape)}'
            )
        return axis

    def channel_stat(self, x: Tensor, fn: str, finite_only: bool = False) -> Tensor:
        """A per-tensor or per-channel statistic of ``x`` as a ``(C,)`` tensor.

        Computed in float32 (float64 while :meth:`_initialize` redoes an
        initialization whose float32 statistics overflowed).

        Args:
            x (Tensor): The tensor.
            fn (str): One of ``'min'``, ``'max'``, ``'absmax'``, ``'absmean'``,
                ``'mean'``, ``'std'`` (``'absmax'`` not with ``finite_only``).
            finite_only (bool): Leave NaN and +-inf elements out (see
                :func:`~mmcompress.quant.functions.stat_of_finite`); for ranges
                taken from the tensor being quantized. Defaults to False.

        Returns:
            Tensor: Shape ``param_shape``.
        """
        if self.per_channel:
            axis = self.checked_channel_axis(x)
            flat = x.detach().transpose(0, axis).reshape(x.shape[axis], -1)
            if self.num_groups:
                # contiguous channels of a group form one row
                flat = flat.reshape(self.num_groups, -1)
        else:
            flat = x.detach().reshape(1, -1)
        flat = flat.to(self._stat_dtype)
        if finite_only:
            return stat_of_finite(flat, fn, dim=1, unbiased=flat.shape[1] > 1)
        if fn == 'min':
            return flat.amin(dim=1)
        if fn == 'max':
            return flat.amax(dim=1)
        if fn == 'absmax':
            return flat.abs().amax(dim=1)
        if fn == 'absmean':
            return flat.abs().mean(dim=1)
        if fn == 'mean':
            return flat.mean(dim=1)
        if fn == 'std':
            return flat.std(dim=1, unbiased=flat.shape[1] > 1)
        raise ValueError(
            f'unknown statistic {fn!r}; valid: min, max, absmax, absmean, mean, std'
        )
