"""Range observers for post-training quantization (registered in ``TASK_UTILS``).

An observer sees the tensors a quantizer would quantize (:meth:`update`, any
number of batches) and then gives the step of a zero-point-free uniform grid
``[qmin, qmax] * scale`` (:meth:`compute_scale`), the grid of
:class:`~mmcompress.quant.quantizers.LSQQuantizer`: for a signed grid the clip
value ``c`` is the largest ``|x|`` kept and ``scale = c / qmax``; for an unsigned
grid (``qmin = 0``) ``c`` is the largest ``x`` kept and ``scale = c / qmax``.

Statistics are per tensor (``granularity='tensor'``), per channel along
``channel_axis`` (``'channel'``) or per group (``'group'`` with
``num_groups`` = G: the C channels are split into G contiguous groups of
``C / G`` channels; G = 1 is per tensor, G = C per channel). The scale is always
returned with one value per channel (``(C,)``, or ``(1,)`` per tensor), the
channels of a group sharing their group's value, so it loads into a per-channel
quantizer and exports as per-channel scales.

* :class:`MinMaxObserver`: ``c`` = the largest ``|x|`` (signed) / ``max(x, 0)``
  (unsigned) seen over all batches;
* :class:`EMAMinMaxObserver`: moving average of the per-batch min and max
  (``momentum``; the first batch sets them);
* :class:`PercentileObserver`: ``c`` = the ``percentile`` of ``|x|`` (signed) /
  ``max(x, 0)`` (unsigned), as ``numpy.percentile`` with linear interpolation,
  over the stored values (at most ``max_samples`` per group, uniformly
  subsampled with a seeded generator beyond that);
* :class:`MSEObserver`: ``c = r * max`` for ``r`` in ``num_candidates`` evenly
  spaced ratios of ``[min_ratio, 1]``, choosing the one that minimizes
  ``sum |Q_c(x) - x|^p`` over the stored values (``p = 2``: MSE; BRECQ's
  ``scale_method='mse'`` uses the same search with ``p = 2.4``).
"""

from typing import Optional

import torch
from torch import Tensor

from mmcompress.registry import TASK_UTILS
from mmcompress.utils.checks import check_number

GRANULARITIES = ('tensor', 'channel', 'group')


class BaseObserver:
    """Collects statistics per tensor / channel / group of channels.

    Args:
        granularity (str): ``'tensor'``, ``'channel'`` or ``'group'``.
            Defaults to ``'tensor'``.
        channel_axis (int): The channel dimension (0 for weights, 1 for
            activations ``(N, C, ...)``). Defaults to 0.
        num_groups (int, optional): G for ``granularity='group'``; must divide
            the number of channels. Defaults to None.
    """

    def __init__(
        self,
        granularity: str = 'tensor',
        channel_axis: int = 0,
        num_groups: Optional[int] = None,
    ) -> None:
        name = type(self).__name__
        if granularity not in GRANULARITIES:
            raise ValueError(
                f'{name}: granularity must be one of {GRANULARITIES}, '
                f'got {granularity!r}'
            )
        if granularity == 'group':
            if isinstance(num_groups, bool) or not isinstance(num_groups, int):
                raise ValueError(
                    f"{name}: granularity='group' needs num_groups (an int >= 1), "
                    f'got {num_groups!r}'
                )
            if num_groups < 1:
                raise ValueError(f'{name}: num_groups must be >= 1, got {num_groups}')
        self.granularity = granularity
        self.channel_axis = int(channel_axis)
        self.num_groups = num_groups
        self.num_channels = None
        self.num_batches = 0
        self.has_negative = False

    def rows(self, x: Tensor) -> Tensor:
        """``x`` as a ``(rows, values)`` float tensor: one row per group.

        Args:
            x (Tensor): A tensor of the observed kind.

        Returns:
            Tensor: One row per tensor (1), group (G) or channel (C).
        """
        x = x.detach().float()
        if self.granularity == 'tensor':
            channels = 1
            flat = x.reshape(1, -1)
        else:
            axis = self.channel_axis % x.dim()
            channels = x.shape[axis]
            flat = x.transpose(0, axis).reshape(channels, -1)
        if self.num_channels is None:
            self.num_channels = channels
            if self.granularity == 'group' and channels % self.num_groups:
                raise ValueError(
                    f'{type(self).__name__}: num_groups={self.num_groups} does '
                    f'not divide the {channels} channels along axis '
                    f'{self.channel_axis}; choose a divisor of {channels}'
                )
        elif channels != self.num_channels:
            raise ValueError(
                f'{type(self).__name__}: saw {self.num_channels} channels, now a '
                f'tensor of shape {tuple(x.shape)}'
            )
        if self.granularity == 'group':
            flat = flat.reshape(self.num_groups, -1)
        return flat

    def update(self, x: Tensor) -> None:
        """Observe one tensor (a batch of activations or a weight).

        Args:
            x (Tensor): The tensor; it must be finite and non-empty.
        """
        if x.numel() == 0:
            return
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f'{type(self).__name__}: observed a tensor holding NaN or inf '
                f'(shape {tuple(x.shape)}); the float model produces non-finite '
                'values on the calibration data: check the checkpoint and the '
                'data preprocessing'
            )
        rows = self.rows(x)
        self.has_negative = self.has_negative or bool((rows < 0).any())
        self._update(rows)
        self.num_batches += 1

    def _update(self, rows: Tensor) -> None:
        raise NotImplementedError

    def clip_values(self, qmin: int, qmax: int) -> Tensor:
        """The clip value ``c`` of each row (see the module docstring).

        Args:
            qmin (int): Smallest integer level (negative for a signed grid).
            qmax (int): Largest integer level.

        Returns:
            Tensor: Shape ``(rows,)``.
        """
        raise NotImplementedError

    def compute_scale(self, qmin: int, qmax: int) -> Tensor:
        """The step ``c / qmax`` per channel (``(1,)`` per tensor).

        Args:
            qmin (int): Smallest integer level.
            qmax (int): Largest integer level.

        Returns:
            Tensor: Positive steps, one per channel (groups repeated).
        """
        if not self.num_batches:
            raise RuntimeError(
                f'{type(self).__name__}: no data observed; the calibration '
                'loop saw no batch reaching this quantizer'
            )
        scale = self.clip_values(qmin, qmax) / qmax
        scale = scale.clamp_min(torch.finfo(torch.float32).eps)
        if self.granularity == 'group':
            scale = scale.repeat_interleave(self.num_channels // self.num_groups)
        return scale

    @staticmethod
    def magnitude(rows: Tensor, qmin: int) -> Tensor:
        """``|x|`` on a signed grid, ``max(x, 0)`` on an unsigned one."""
        return rows.abs() if qmin < 0 else rows.clamp_min(0)


@TASK_UTILS.register_module()
class MinMaxObserver(BaseObserver):
    """Running min / max over every observed batch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.low = self.high = None

    def _update(self, rows: Tensor) -> None:
        low, high = rows.amin(1), rows.amax(1)
        if self.low is None:
            self.low, self.high = low, high
        else:
            self.low = torch.minimum(self.low, low)
            self.high = torch.maximum(self.high, high)

    def clip_values(self, qmin: int, qmax: int) -> Tensor:
        if qmin < 0:
            return torch.maximum(self.low.abs(), self.high.abs())
        return self.high.clamp_min(0)


@TASK_UTILS.register_module()
class EMAMinMaxObserver(MinMaxObserver):
    """Exponential moving average of the per-batch min / max.

    Args:
        momentum (float): Weight of the new batch, in (0, 1]. Defaults to 0.1.
        **kwargs: :class:`BaseObserver` arguments.
    """

    def __init__(self, momentum: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.momentum = check_number(
            'momentum',
            momentum,
            low=0,
            high=1,
            low_open=True,
            owner='EMAMinMaxObserver',
        )

    def _update(self, rows: Tensor) -> None:
        low, high = rows.amin(1), rows.amax(1)
        if self.low is None:
            self.low, self.high = low, high
        else:
            self.low = self.low.lerp(low, self.momentum)
            self.high = self.high.lerp(high, self.momentum)


class SampleObserver(BaseObserver):
    """Stores the observed values (at most ``max_samples`` per row).

    Args:
        max_samples (int): Values kept per row; beyond it, each batch adds a
            uniform random subsample in proportion to its size (seeded).
            Defaults to 200_000.
        seed (int): Seed of the subsampling generator. Defaults to 0.
        **kwargs: :class:`BaseObserver` arguments.
    """

    def __init__(self, max_samples: int = 200_000, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_samples = int(
            check_number('max_samples', max_samples, low=1, owner=type(self).__name__)
        )
        self.generator = torch.Generator().manual_seed(int(seed))
        self.samples = []
        self.seen = 0

    def _update(self, rows: Tensor) -> None:
        self.seen += rows.shape[1]
        self.samples.append(rows.cpu())
        stored = torch.cat(self.samples, 1)
        if stored.shape[1] > self.max_samples:
            keep = torch.randperm(stored.shape[1], generator=self.generator)
            stored = stored[:, keep[: self.max_samples]]
        self.samples = [stored]

    def values(self) -> Tensor:
        """Tensor: The stored values, ``(rows, n)``."""
        return self.samples[0]


@TASK_UTILS.register_module()
class PercentileObserver(SampleObserver):
    """Clip at a percentile of the magnitudes (``numpy.percentile``, linear).

    Args:
        percentile (float): In (0, 100]. Defaults to 99.99.
        **kwargs: :class:`SampleObserver` arguments.
    """

    def __init__(self, percentile: float = 99.99, **kwargs) -> None:
        super().__init__(**kwargs)
        self.percentile = check_number(
            'percentile',
            percentile,
            low=0,
            high=100,
            low_open=True,
            owner='PercentileObserver',
        )

    def clip_values(self, qmin: int, qmax: int) -> Tensor:
        values = self.magnitude(self.values(), qmin).double()
        # row by row: torch.quantile refuses inputs above 2^24 elements
        return torch.stack(
            [torch.quantile(row, self.percentile / 100) for row in values]
        ).float()


@TASK_UTILS.register_module()
class MSEObserver(SampleObserver):
    """Clip value minimizing the Lp quantization error over a grid of ratios.

    Args:
        p (float): Error exponent (2: MSE). Defaults to 2.0.
        num_candidates (int): Ratios evenly spaced in ``[min_ratio, 1]``.
            Defaults to 100.
        min_ratio (float): Smallest ratio of the maximum tried. Defaults to 0.01.
        **kwargs: :class:`SampleObserver` arguments.
    """

    def __init__(
        self,
        p: float = 2.0,
        num_candidates: int = 100,
        min_ratio: float = 0.01,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        owner = 'MSEObserver'
        self.p = check_number('p', p, low=0, low_open=True, owner=owner)
        self.num_candidates = int(
            check_number('num_candidates', num_candidates, low=1, owner=owner)
        )
        self.min_ratio = check_number(
            'min_ratio', min_ratio, low=0, high=1, low_open=True, owner=owner
        )

    def clip_values(self, qmin: int, qmax: int) -> Tensor:
        values = self.values()
        top = self.magnitude(values, qmin).amax(1)
        ratios = torch.linspace(self.min_ratio, 1.0, self.num_candidates)
        best_err = torch.full_like(top, float('inf'))
        best = top.clone()
        for ratio in ratios.tolist():
            clip = top * ratio
            scale = (clip / qmax).clamp_min(torch.finfo(torch.float32).eps)[:, None]
            quant = torch.clamp(torch.round(values / scale), qmin, qmax) * scale
            err = (quant - values).abs().pow(self.p).sum(1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, clip, best)
        return best


def build_observer(cfg, **default_args) -> BaseObserver:
    """Build an observer from a config dict (``type`` in ``TASK_UTILS``).

    Args:
        cfg (dict): E.g. ``dict(type='MSEObserver', granularity='channel')``.
        **default_args: Filled in unless ``cfg`` sets them.

    Returns:
        BaseObserver: The observer.
    """
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(
            "an observer is a config dict with a 'type' key, e.g. "
            f"dict(type='MinMaxObserver'); got {cfg!r}"
        )
    return TASK_UTILS.build(dict(cfg), default_args=default_args)
