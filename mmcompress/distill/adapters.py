"""Adapters that map student features to the teacher's shape.

An adapter belongs to the student side: it is trained with the student and
saved in the distillation checkpoint, but it is not part of the plain student
checkpoint (the deployed student never runs it).

``adapter='auto'`` (the default of a distillation entry) decides per recorded
tensor from the shapes found by a dry forward at build time:

* equal shapes -> no adapter;
* feature maps (N, C, H, W) with different C -> :class:`ConvBNAdapter`
  (1x1 conv without bias + BatchNorm), or a plain 1x1 conv for losses that
  standardise each channel themselves (``channel_affine_invariant``, e.g.
  PKD: a BatchNorm before them changes neither the loss nor its gradient);
* vectors (N, C) or tokens (N, L, C) with different C ->
  :class:`LinearAdapter`;
* different spatial size (H, W) -> the (adapted) student map is resized to the
  teacher's size with bilinear interpolation at run time.

``adapter=None`` forbids adapters (a shape mismatch is an error at build
time); ``adapter=dict(type=..., ...)`` builds that module for every tensor of
the entry, filling ``in_channels``/``out_channels`` (or ``in_features``/
``out_features``) from the dry-run shapes when the constructor accepts them
and the config leaves them out.

Losses that compare class distributions (``compares_class_distributions``:
KD, decoupled KD, DIST) get no automatic adapter but the resize of dense
logits: a different class count, or tensors of different kinds (logits
against features), is an error, because a learned map in front of the
softmax would make up the class correspondence. Every adapter built is logged
once at INFO with its entry and shapes.
"""

import inspect
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmcompress.registry import MODELS

Shape = Sequence[int]


@MODELS.register_module()
class ConvBNAdapter(nn.Module):
    """1x1 convolution (no bias) followed by BatchNorm, for feature maps.

    Args:
        in_channels (int): Student channels.
        out_channels (int): Teacher channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to (N, out_channels, H, W)."""
        return self.bn(self.conv(x))


@MODELS.register_module()
class LinearAdapter(nn.Linear):
    """A linear map over the last dimension, for vectors and tokens.

    Args:
        in_features (int): Student feature size.
        out_features (int): Teacher feature size.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)


def _fill_sizes(cfg: dict, c_in: int, c_out: int) -> dict:
    cfg = dict(cfg)
    cls = MODELS.get(cfg['type']) if isinstance(cfg['type'], str) else cfg['type']
    if cls is None:
        raise KeyError(f'Adapter type {cfg["type"]!r} is not registered.')
    params = inspect.signature(cls.__init__).parameters
    for in_key, out_key in (
        ('in_channels', 'out_channels'),
        ('in_features', 'out_features'),
    ):
        if in_key in params:
            cfg.setdefault(in_key, c_in)
        if out_key in params:
            cfg.setdefault(out_key, c_out)
    return cfg


def _spatial_differs(s: Shape, t: Shape) -> bool:
    return len(s) == len(t) == 4 and tuple(s[2:]) != tuple(t[2:])


class EntryAdapter(nn.Module):
    """The adapters of one distillation entry (one per recorded tensor).

    Args:
        layers (list[nn.Module | None]): Adapter per tensor (None: identity).
        resize (list[bool]): Whether each adapted student map is resized to
            the teacher's spatial size.
    """

    def __init__(self, layers: List[Optional[nn.Module]], resize: List[bool]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [layer if layer is not None else nn.Identity() for layer in layers]
        )
        self.resize = list(resize)

    @property
    def is_identity(self) -> bool:
        """True when the adapter changes nothing."""
        return all(isinstance(m, nn.Identity) for m in self.layers) and not any(
            self.resize
        )

    def forward(
        self, feats_S: List[torch.Tensor], feats_T: List[torch.Tensor]
    ) -> List[torch.Tensor]:
        """Adapt each student tensor towards its teacher tensor."""
        out = []
        for layer, resize, s, t in zip(self.layers, self.resize, feats_S, feats_T):
            s = layer(s)
            if resize and s.shape[-2:] != t.shape[-2:]:
                s = F.interpolate(
                    s, size=t.shape[-2:], mode='bilinear', align_corners=False
                )
            out.append(s)
        return out


def _shape_text(shape: Shape) -> str:
    return '(N, ' + ', '.join(str(s) for s in shape[1:]) + ')'


def _check_class_distributions(
    name: str, index: int, loss_name: str, s: tuple, t: tuple
) -> None:
    """Refuse what no adapter may bridge for a loss that compares class
    distributions: other class counts or other kinds of tensors."""
    where = (
        f'Distill entry {name!r} tensor {index}: {loss_name} compares '
        f'class distributions, but the student records shape {s} and '
        f'the teacher {t}'
    )
    if len(s) != len(t):
        raise ValueError(
            f'{where}: tensors of different kinds (rank {len(s)} vs '
            f'{len(t)}, e.g. logits against features). Record the logits on '
            "both sides (e.g. 'head.fc'), or use a feature loss "
            '(FeatureMSELoss, PKDLoss...) for features.'
        )
    if len(s) >= 2 and s[1] != t[1]:
        raise ValueError(
            f'{where}: {s[1]} vs {t[1]} classes (dim 1); no adapter may map '
            'one set of classes onto another. Distill from a teacher trained '
            'on the same classes, record the logits on both sides, or use a '
            'feature loss (FeatureMSELoss...) on features instead.'
        )
    if len(s) != 4 and s[1:] != t[1:]:
        raise ValueError(
            f'{where}: only the spatial size (H, W) of (N, C, H, W) logits can '
            'be adapted (resized). Record tensors of equal shapes.'
        )


def build_entry_adapter(
    cfg: Union[str, dict, None],
    name: str,
    shapes_S: List[Shape],
    shapes_T: List[Shape],
    channel_affine_invariant: bool = False,
    compares_class_distributions: bool = False,
    loss_name: str = 'the loss',
) -> EntryAdapter:
    """Build the adapter of an entry from the dry-run shapes.

    Args:
        cfg (str | dict | None): ``'auto'``, ``None`` or an adapter config.
        name (str): Entry name, used in messages.
        shapes_S (list[tuple]): Shapes of the recorded student tensors.
        shapes_T (list[tuple]): Shapes of the recorded teacher tensors.
        channel_affine_invariant (bool): The entry's loss ignores a
            per-channel affine map of the student: automatic map adapters
            are a 1x1 conv without BatchNorm. Defaults to False.
        compares_class_distributions (bool): The entry's loss compares class
            distributions: automatic adapters only resize (N, C, H, W)
            logits; other class counts or tensor kinds are an error.
            Defaults to False.
        loss_name (str): Name of the entry's loss, used in messages.

    Returns:
        EntryAdapter: The adapter (possibly an identity).
    """
    if len(shapes_S) != len(shapes_T):
        raise ValueError(
            f'Distill entry {name!r}: the student records {len(shapes_S)} '
            f'tensor(s) but the teacher records {len(shapes_T)}; they are '
            'paired element by element, so the counts must match.'
        )
    if not (cfg is None or cfg == 'auto' or isinstance(cfg, dict)):
        raise ValueError(
            f'Distill entry {name!r}: adapter={cfg!r} is invalid;'
            " use 'auto', None or dict(type=...)."
        )
    layers, resize = [], []
    for i, (s, t) in enumerate(zip(shapes_S, shapes_T)):
        s, t = tuple(s), tuple(t)
        where = (
            f'Distill entry {name!r} tensor {i}: student shape {s}, teacher shape {t}'
        )
        if cfg == 'auto' and compares_class_distributions:
            _check_class_distributions(name, i, loss_name, s, t)
        if cfg is None:
            if s[1:] != t[1:]:
                raise ValueError(
                    f"{where} differ and adapter=None. Use adapter='auto' "
                    '(1x1 conv+BN for maps, linear for vectors, resize for '
                    'spatial size) or an explicit adapter config.'
                )
            layers.append(None)
            resize.append(False)
            continue
        if (
            len(s) != len(t)
            or (len(s) == 3 and s[1] != t[1])
            or len(s) not in (2, 3, 4)
        ):
            if isinstance(cfg, dict):
                layers.append(MODELS.build(_fill_sizes(cfg, s[-1], t[-1])))
                resize.append(False)
                continue
            raise ValueError(
                f'{where}: no automatic adapter maps between these shapes '
                '(automatic adapters handle (N,C,H,W) maps, (N,C) vectors and '
                '(N,L,C) tokens of equal rank). Configure adapter=dict(...).'
            )
        channel_dim = 1 if len(s) == 4 else -1
        c_s, c_t = s[channel_dim], t[channel_dim]
        if isinstance(cfg, dict):
            layers.append(MODELS.build(_fill_sizes(cfg, c_s, c_t)))
        elif c_s == c_t:
            layers.append(None)
        elif len(s) == 4 and channel_affine_invariant:
            layers.append(nn.Conv2d(c_s, c_t, 1, bias=False))
        elif len(s) == 4:
            layers.append(ConvBNAdapter(c_s, c_t))
        else:
            layers.append(LinearAdapter(c_s, c_t))
        resize.append(_spatial_differs(s, t))
    for i, (layer, resized) in enumerate(zip(layers, resize)):
        if layer is not None or resized:
            steps = [type(layer).__name__] if layer is not None else []
            steps += ["resize to the teacher's (H, W)"] if resized else []
            what = ', then '.join(steps)
            print_log(
                f'Distill entry {name!r} tensor {i}: adapter {what} maps '
                f'student {_shape_text(shapes_S[i])} to teacher '
                f'{_shape_text(shapes_T[i])}.',
                logger='current',
            )
    return EntryAdapter(layers, resize)
