"""The interface every mmcompress quantizer implements.

A quantizer is an ``nn.Module`` that maps a real tensor to its fake-quantized value
(same shape, same dtype) and defines the gradient that flows back. Quantized layers
(:mod:`mmcompress.quant.layers`) hold one for the weight (``weight_quantizer``) and one
for the layer input (``act_quantizer``); a quantizer knows nothing of layers or models.

Contract (what a subclass provides):

* ``quantize(x)``: the fake-quantized value of ``x`` with the method's backward.
* ``init_from_data(x)`` (only when ``requires_init`` is True): set the learnable
  range / step / thresholds from a real tensor. It runs under ``torch.no_grad()`` on
  the first ``forward`` while the ``initialized`` buffer is 0: the first training
  batch after a float checkpoint was loaded, or a calibration pass (see
  :meth:`BaseQuantizer.reset_initialization`). It receives only finite, non-empty
  tensors.
* ``min_bits`` / ``max_bits`` class attributes: the supported bit-width range
  (checked at construction; default 2..8, a method that supports 1 bit lowers
  ``min_bits``; a binary quantizer sets both to 1).
* ``output_in_unit_range`` class attribute: False (default) when the output lives in
  the input's own units (STE, LSQ); True when it lives in a normalized range ([0, 1]
  for activations, [-1, 1] for weights: EWGS, DAQ, where the layer multiplies its
  output by a learned ``output_scale``).
* optionally ``export_qparams(x=None)``: the equivalent affine integer quantizer
  (:class:`AffineQParams`) used by ONNX export; the default raises a ``TypeError``
  naming the quantizer, which is what happens for non-uniform quantizers.

What the base class provides:

* argument checks (``bits`` in range, ``channel_axis`` valid, ``num_channels`` given
  when ``per_channel``), with errors naming the value and the valid range;
* state in buffers, so checkpoints carry it: ``initialized`` (0/1) and ``signed``
  (0/1; decided from data when constructed with ``signed=None``). Learnable
  quantities must be ``nn.Parameter`` s or buffers of the subclass, created in
  ``__init__`` with their final shape (the optimizer is built before the first
  batch), per-channel ones with shape ``(num_channels,)``;
* input handling shared by all methods: an empty tensor is returned as an empty
  tensor; a non-finite tensor seen at initialization raises ``ValueError`` (the range
  would be NaN); an initialization whose float32 statistics overflow (values near
  3.4e38) is redone in float64, and raises ``ValueError`` when the range itself does
  not fit in float32. After initialization (contract of every subclass, tested in
  ``tests/quant/test_bad_input.py``): +-inf and huge finite values saturate to the
  end levels with finite gradients (0 to the input, the clipped-element gradient to
  the range parameters); ranges taken from the tensor itself leave non-finite
  elements out; a NaN element gives NaN at that element of the output only. NaN is
  not checked for at every call (that would synchronise the device at every
  layer): it reaches the loss as in a float model;
* data-driven initialization synchronised across distributed ranks (parameters and
  floating buffers are averaged, ``signed`` is OR-ed), so DDP replicas start equal;
* initialization happens in training mode, or in eval mode while ``calibrating``
  is True (post-training calibration). An uninitialized quantizer in eval mode is
  the identity: build-time dry runs (e.g. ``DistillModel``'s) and evaluation of a
  float checkpoint see the float model and do not fix the ranges on meaningless
  data; a QAT checkpoint carries ``initialized = 1``;
* ``enabled``: a Python switch (not saved) that turns the quantizer into the
  identity, e.g. for float evaluation; ``calibrating`` (not saved) lets an eval-mode
  forward initialize (see :meth:`BaseQuantizer.reset_initialization`);
* helpers for integer ranges (``qmin``, ``qmax``); the per-tensor / per-channel /
  group-wise parameter layout (``param_shape``, ``broadcast(param, x)``,
  ``channel_stat``) comes from :class:`~.granularity.ChannelGranularity`.
"""

import warnings
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn as nn
from mmengine import dist
from torch import Tensor

from .granularity import ChannelGranularity


@dataclass
class AffineQParams:
    """A quantizer written as affine integer quantization, for ONNX export.

    ``x' = (x - offset) * multiplier`` (identity when both are None), then
    ``q = clamp(round(x' / scale) + zero_point, qmin, qmax)`` and the quantizer
    output is ``(q - zero_point) * scale``. For a weight quantizer only
    ``scale``, ``qmin``, ``qmax`` and ``axis`` matter: the fake-quantized weight
    divided by ``scale`` must be an integer in ``[qmin, qmax]``.

    Args:
        scale (Tensor): Positive step, shape ``(1,)`` or ``(C,)``.
        zero_point (Tensor): Integer zero point, same shape as ``scale``.
        qmin (int): Smallest integer level.
        qmax (int): Largest integer level.
        axis (int, optional): Channel axis for per-channel parameters, else None.
        offset (Tensor, optional): Subtracted from the input first.
        multiplier (Tensor, optional): Multiplies ``x - offset``.
    """

    scale: Tensor
    zero_point: Tensor
    qmin: int
    qmax: int
    axis: Optional[int] = None
    offset: Optional[Tensor] = None
    multiplier: Optional[Tensor] = None

    @classmethod
    def of_interval(
        cls,
        lower: Tensor,
        upper: Tensor,
        num_levels: int,
        role: str,
        axis: Optional[int],
    ) -> 'AffineQParams':
        """The parameters of a quantizer that discretizes ``[lower, upper]``.

        Such a quantizer (EWGS, DAQ) outputs ``k / (L - 1)`` for activations and
        ``(2k - (L - 1)) / (L - 1)`` (odd multiples of ``1 / (L - 1)`` in
        ``[-1, 1]``) for weights, with ``k`` the integer level of
        ``(x - lower) / (upper - lower)`` and ``L`` the level count.

        Args:
            lower (Tensor): Lower interval bound, shape ``(1,)`` or ``(C,)``.
            upper (Tensor): Upper interval bound, same shape.
            num_levels (int): ``L``, the number of levels.
            role (str): ``'weight'`` or ``'activation'``.
            axis (int, optional): Channel axis of per-channel bounds, else None.

        Returns:
            AffineQParams: Step ``1 / (L - 1)``, zero point 0; weights in
            ``[-(L - 1), L - 1]``, activations in ``[0, L - 1]`` after the
            offset ``lower`` and the multiplier ``1 / (upper - lower)``.
        """
        levels = num_levels - 1
        lower = lower.detach().clone()
        upper = upper.detach().clone()
        scale = torch.ones_like(upper) / levels
        zero_point = torch.zeros_like(upper)
        if role == 'weight':
            return cls(scale, zero_point, -levels, levels, axis)
        return cls(
            scale,
            zero_point,
            0,
            levels,
            axis,
            offset=lower,
            multiplier=1 / (upper - lower),
        )


def buffer_flag(module: nn.Module, name: str) -> bool:
    """The 0/1 buffer ``name`` of ``module`` as a bool, without a graph break.

    Eagerly the buffer is read (``.item()``) and its Python copy
    ``_<name>_flag`` refreshed; while traced by ``torch.compile`` the copy is
    returned (dynamo guards on it, so a change recompiles). A module never run
    eagerly has no copy yet: the buffer is read (a graph break).

    Args:
        module (nn.Module): Owner of the buffer.
        name (str): Buffer name (``'initialized'``, ``'signed'``...).

    Returns:
        bool: The flag.
    """
    attr = f'_{name}_flag'
    if torch.compiler.is_compiling() and hasattr(module, attr):
        return getattr(module, attr)
    value = bool(getattr(module, name).item())
    setattr(module, attr, value)
    return value


_TRACED_INIT_WARNED = []  # once per process


def warn_traced_initialization(owner: str) -> None:
    """Warn (once per process) that a data-driven initialization ran inside a
    ``torch.compile``-d call.

    The initialization is not traceable (``torch.compiler.disable``): dynamo
    breaks the graph there, and where the break falls inside a loop of the
    model (a backbone iterating over its stages) dynamo gives up on that frame
    for good, so the model runs as one small graph per module for the rest of
    the run instead of one graph: the values are right, the step is slower.

    Args:
        owner (str): Who initializes (class name), for the message.
    """
    if _TRACED_INIT_WARNED:
        return
    _TRACED_INIT_WARNED.append(True)
    warnings.warn(
        f'{owner} initialized from data inside a torch.compile-d call: dynamo '
        'breaks the graph at every such initialization and may keep the model '
        'split into per-module graphs for the rest of the run (slower steps, '
        'same values). Run the first training step (or a calibration pass) '
        "eagerly before compiling; mmengine's compile=True does this when "
        'mmcompress is imported.',
        stacklevel=3,
    )


class BaseQuantizer(ChannelGranularity, nn.Module, metaclass=ABCMeta):
    """Base class of all fake quantizers (uniform, LSQ, EWGS, DAQ, N2UQ, binary).

    Args:
        bits (int): Bit-width; must lie in ``[min_bits, max_bits]`` of the class.
        signed (bool, optional): Whether the integer grid is signed
            (``[-2^(b-1), 2^(b-1)-1]``) or unsigned (``[0, 2^b-1]``). None decides
            from the first batch (signed iff it holds a negative value). Methods
            with a fixed convention ignore it. Defaults to None.
        per_channel (bool): One range per channel along ``channel_axis`` instead of
            one per tensor. Defaults to False.
        channel_axis (int): The channel dimension for ``per_channel`` (0 for
            weights ``[C_out, ...]``, 1 for activations ``[N, C, ...]``).
            Defaults to 0.
        num_channels (int, optional): Number of channels; required when
            ``per_channel`` (quantized layers pass it). Defaults to None.
        narrow_range (bool): Drop the most negative signed level so the grid is
            symmetric (``[-(2^(b-1)-1), 2^(b-1)-1]``). Defaults to False.
        num_groups (int, optional): Group-wise quantization (with
            ``per_channel``): the channels are split into ``num_groups``
            contiguous groups of ``num_channels / num_groups`` channels, each
            with its own range parameters (shape ``(num_groups,)``); 1 is per
            tensor, ``num_channels`` per channel. None: one per channel.
            Defaults to None.
    """

    min_bits: ClassVar[int] = 2
    max_bits: ClassVar[int] = 8
    requires_init: ClassVar[bool] = True
    # a float checkpoint has no quantizer state: it may be missing on load_from
    # (mmcompress.utils.load_check); the quantizer initializes from data
    checkpoint_optional_state: ClassVar[bool] = True
    output_in_unit_range: ClassVar[bool] = False

    def __init__(
        self,
        bits: int,
        signed: Optional[bool] = None,
        per_channel: bool = False,
        channel_axis: int = 0,
        num_channels: Optional[int] = None,
        narrow_range: bool = False,
        num_groups: Optional[int] = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise TypeError(
                f'{name}: bits must be an int, got {bits!r} ({type(bits).__name__})'
            )
        if not self.min_bits <= bits <= self.max_bits:
            raise ValueError(
                f'{name}: bits={bits} is not supported; valid bit-widths are '
                f'{self.min_bits}..{self.max_bits}'
            )
        if signed not in (None, True, False):
            raise ValueError(
                f'{name}: signed must be True, False or None '
                f'(decide from data), got {signed!r}'
            )
        if per_channel:
            if num_channels is None or int(num_channels) < 1:
                raise ValueError(
                    f'{name}: per_channel=True needs num_channels >= 1 (the size '
                    f'of dimension channel_axis={channel_axis}), got '
                    f'num_channels={num_channels!r}'
                )
        if num_groups is not None:
            self._check_groups(num_groups, per_channel, num_channels)
        self.num_groups = None if num_groups is None else int(num_groups)
        self.bits = bits
        self.per_channel = bool(per_channel)
        self.channel_axis = int(channel_axis)
        self.num_channels = int(num_channels) if per_channel else 1
        self.narrow_range = bool(narrow_range)
        self.auto_signed = signed is None
        self.enabled = True
        self.calibrating = False
        self.register_buffer(
            'initialized',
            torch.tensor(0 if self.requires_init else 1, dtype=torch.uint8),
        )
        self.register_buffer(
            'signed', torch.tensor(int(bool(signed)), dtype=torch.uint8)
        )
        self.sync_flags()

    # ------------------------------------------------------------------ ranges
    @property
    def is_signed(self) -> bool:
        """bool: Whether the integer grid is signed."""
        return self._flag('signed')

    @property
    def qmin(self) -> int:
        """int: Smallest integer level."""
        if not self.is_signed:
            return 0
        low = -(2 ** (self.bits - 1))
        return low + 1 if self.narrow_range else low

    @property
    def qmax(self) -> int:
        """int: Largest integer level."""
        return 2 ** (self.bits - 1) - 1 if self.is_signed else 2**self.bits - 1

    @property
    def num_levels(self) -> int:
        """int: Number of quantization levels ``2^bits``."""
        return 2**self.bits

    # ------------------------------------------------------------ the contract
    @abstractmethod
    def quantize(self, x: Tensor) -> Tensor:
        """Fake-quantize ``x`` (forward value and the method's gradient).

        Args:
            x (Tensor): Non-empty input.

        Returns:
            Tensor: Same shape as ``x``.
        """

    def init_from_data(self, x: Tensor) -> None:
        """Set data-dependent parameters from a real batch (no-op by default).

        Called under ``torch.no_grad()`` with a finite, non-empty tensor; the
        ``signed`` buffer has already been decided.

        Args:
            x (Tensor): The first tensor this quantizer sees.
        """

    def export_qparams(self, x: Optional[Tensor] = None) -> AffineQParams:
        """The equivalent affine integer quantizer, for ONNX export.

        Args:
            x (Tensor, optional): The tensor being quantized, for quantizers whose
                grid depends on it (weight quantizers computing their scale from
                the weight). Defaults to None.

        Returns:
            AffineQParams: Scale, zero point and integer range.
        """
        raise TypeError(
            f'{type(self).__name__} is not an affine (uniform-grid) quantizer, so '
            'it cannot be exported as QuantizeLinear/DequantizeLinear'
        )

    # ------------------------------------------------------------- machinery
    def sync_flags(self) -> None:
        """Copy the ``initialized`` / ``signed`` buffers into Python bools.

        Code traced by ``torch.compile`` reads these copies instead of calling
        ``.item()`` on the buffers (a graph break per quantizer); dynamo guards
        on them, so a change recompiles. Every eager forward, initialization,
        reset and state-dict load refreshes them; code that writes the buffers
        directly and then runs a compiled forward calls this first.
        """
        self._initialized_flag = bool(self.initialized.item())
        self._signed_flag = bool(self.signed.item())

    def _flag(self, name: str) -> bool:
        """The ``name`` buffer as a bool (:func:`buffer_flag`)."""
        return buffer_flag(self, name)

    def reset_initialization(self) -> None:
        """Make the next forward re-initialize from data (calibration pass)."""
        if self.requires_init:
            self.initialized.fill_(0)
            self._initialized_flag = False

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.sync_flags()

    @torch.compiler.disable
    def _initialize(self, x: Tensor, traced: bool = False) -> None:
        if traced:
            warn_traced_initialization(type(self).__name__)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f'{type(self).__name__}: cannot initialize from a tensor holding '
                f'NaN or inf (shape {tuple(x.shape)}); the quantization range '
                'would not be finite. Check the input data / the float model.'
            )
        if self.auto_signed:
            is_negative = torch.tensor(float(bool((x < 0).any())), device=x.device)
            if dist.get_world_size() > 1:
                dist.all_reduce(is_negative, op='max')
            self.signed.fill_(int(is_negative.item() > 0))
        self.init_from_data(x)
        if not self._state_is_finite():
            # float32 statistics of values near the float32 limit overflow
            # (e.g. the sum inside a mean): redo them in float64
            self._stat_dtype = torch.float64
            try:
                self.init_from_data(x)
            finally:
                del self._stat_dtype
            if not self._state_is_finite():
                raise ValueError(
                    f'{type(self).__name__}: the range initialized from this '
                    f'tensor (shape {tuple(x.shape)}, largest |x| = '
                    f'{x.detach().abs().max().item():.3g}) does not fit in '
                    'float32; rescale the input of this layer or keep the '
                    'layer float.'
                )
        if dist.get_world_size() > 1:
            tensors = [p.data for p in self.parameters(recurse=False)]
            tensors += [
                b for n, b in self.named_buffers(recurse=False) if b.is_floating_point()
            ]
            if tensors:
                dist.all_reduce_params(tensors, op='mean')
        self.initialized.fill_(1)
        self.sync_flags()

    def _state_is_finite(self) -> bool:
        """Whether this quantizer's own parameters and float buffers are finite."""
        tensors = list(self.parameters(recurse=False)) + [
            b for b in self.buffers(recurse=False) if b.is_floating_point()
        ]
        return all(bool(torch.isfinite(t).all()) for t in tensors)

    def forward(self, x: Tensor) -> Tensor:
        """Initialize on the first call if needed, then fake-quantize.

        Args:
            x (Tensor): Input of any shape (empty allowed).

        Returns:
            Tensor: The fake-quantized tensor; ``x`` itself when disabled or
            when not yet initialized in eval mode (see the class docstring);
            an empty tensor for an empty input.
        """
        if not self.enabled:
            return x
        if x.numel() == 0:
            return x.clone()
        if not self._flag('initialized'):
            if not (self.training or self.calibrating):
                return x
            with torch.no_grad():
                self._initialize(x, torch.compiler.is_compiling())
        return self.quantize(x)

    def extra_repr(self) -> str:
        signed = (
            'auto'
            if (self.auto_signed and not self.initialized.item())
            else self.is_signed
        )
        groups = f', num_groups={self.num_groups}' if self.num_groups else ''
        return (
            f'bits={self.bits}, signed={signed}, per_channel={self.per_channel}'
            + groups
        )
