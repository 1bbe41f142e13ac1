"""Masked Generative Distillation (MGD): the loss and its per-level generator."""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .base import (
    DistillLoss,
    TensorOrSeq,
    check_feature_maps,
    check_positive,
    check_same_dims,
    pair_levels,
)


class MGDGenerator(nn.Module):
    """MGD's learnable part for one level: optional 1x1 align conv
    (student -> teacher channels) and the generation block
    Conv3x3 -> ReLU -> Conv3x3 on teacher channels.

    Args:
        student_channels (int): Channels of the student feature.
        teacher_channels (int): Channels of the teacher feature.
    """

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.align = (
            nn.Conv2d(student_channels, teacher_channels, 1)
            if student_channels != teacher_channels
            else nn.Identity()
        )
        self.generation = nn.Sequential(
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(teacher_channels, teacher_channels, 3, padding=1),
        )

    def forward(self, feature: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Generate the teacher feature from the masked, aligned student."""
        return self.generation(self.align(feature) * mask)


@MODELS.register_module()
class MGDLoss(DistillLoss):
    """Masked Generative Distillation (Yang et al., ECCV 2022).

    A random spatial mask :math:`M \\in \\{0,1\\}^{N\\times1\\times H\\times
    W}` with :math:`P(M=0)=\\lambda` is drawn from torch's global RNG at
    every call; :math:`G` = Conv3x3 -> ReLU -> Conv3x3 (after an optional
    1x1 align conv from student to teacher channels) must regenerate the
    teacher feature:

    .. math::
        L = \\alpha \\sum (G(align(S) \\odot M) - T)^2 / N

    Defaults (lambda=0.65, alpha=2e-5 per FPN level) are the official /
    mmrazor detection ones. The generator holds trainable parameters (one
    per level). Give the channels to build it at construction. Without them
    it is built at the first forward from the input shapes (or from the
    shapes in a loaded state dict); then that first forward must happen
    before the optimizer is built and the model is wrapped for DDP (a dry
    forward at model build time does it).

    Args:
        teacher_channels (int, optional): Teacher channels. Defaults to None
            (inferred).
        student_channels (int, optional): Student channels; None means the
            teacher's when ``teacher_channels`` is given. Defaults to None.
        num_levels (int): Number of levels (feature maps per call) when the
            channels are given. Defaults to 1.
        lambda_mgd (float): Masking ratio in [0, 1). Defaults to 0.65.
        alpha_mgd (float): Loss scale. Defaults to 2e-5.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        teacher_channels: Optional[int] = None,
        student_channels: Optional[int] = None,
        num_levels: int = 1,
        lambda_mgd: float = 0.65,
        alpha_mgd: float = 2e-5,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(loss_weight)
        self.lambda_mgd = check_number(
            'lambda_mgd', lambda_mgd, low=0, high=1, high_open=True
        )
        self.alpha_mgd = check_positive('alpha_mgd', alpha_mgd)
        if (
            isinstance(num_levels, bool)
            or not isinstance(num_levels, int)
            or num_levels < 1
        ):
            raise ValueError(f'num_levels must be an int >= 1, got {num_levels!r}')
        self.generators = nn.ModuleList()
        if teacher_channels is None:
            if student_channels is not None:
                raise ValueError(
                    'MGDLoss: student_channels was given without '
                    'teacher_channels; give both, only teacher_channels '
                    '(same channels), or neither (inferred)'
                )
            return
        channels_T = int(check_positive('teacher_channels', teacher_channels))
        channels_S = (
            channels_T
            if student_channels is None
            else int(check_positive('student_channels', student_channels))
        )
        self._build([(channels_S, channels_T)] * num_levels)

    def _build(self, channels: List[Tuple[int, int]]) -> None:
        """Create one generator per ``(student, teacher)`` channel pair."""
        self.generators.extend(
            MGDGenerator(channels_S, channels_T) for channels_S, channels_T in channels
        )

    def random_mask(self, feature: torch.Tensor) -> torch.Tensor:
        """Spatial keep-mask (N, 1, H, W): 0 with probability lambda."""
        num, _, height, width = feature.shape
        noise = torch.rand((num, 1, height, width), device=feature.device)
        return (noise <= 1 - self.lambda_mgd).to(feature.dtype)

    def forward(
        self, preds_S: TensorOrSeq, preds_T: TensorOrSeq, **kwargs
    ) -> torch.Tensor:
        """Weighted MGD loss summed over levels (see the class docstring)."""
        pairs = pair_levels(self.loss_name, preds_S, preds_T)
        for pred_S, pred_T in pairs:
            check_feature_maps(self.loss_name, pred_S, pred_T)
            check_same_dims(
                self.loss_name, pred_S, pred_T, (0, 2, 3), 'batch and spatial size'
            )
        if len(self.generators) == 0:
            self._build([(s.shape[1], t.shape[1]) for s, t in pairs])
            self.generators.to(pairs[0][0].device)
        if len(self.generators) != len(pairs):
            raise ValueError(
                f'{self.loss_name} was built for '
                f'{len(self.generators)} level(s) but got '
                f'{len(pairs)}; set num_levels accordingly'
            )
        total = sum(
            self.level_loss(pred_S, pred_T, generator=generator)
            for (pred_S, pred_T), generator in zip(pairs, self.generators)
        )
        return self.loss_weight * total

    def loss_single(
        self,
        pred_S: torch.Tensor,
        pred_T: torch.Tensor,
        generator: MGDGenerator = None,
        **kwargs,
    ) -> torch.Tensor:
        """Unweighted MGD loss of one level with its generator."""
        expected = (generator.student_channels, generator.teacher_channels)
        if (pred_S.shape[1], pred_T.shape[1]) != expected:
            raise ValueError(
                f'{self.loss_name}: the generator expects (student, teacher) '
                f'channels {expected} but got shapes {tuple(pred_S.shape)} '
                f'and {tuple(pred_T.shape)}'
            )
        generated = generator(pred_S, self.random_mask(pred_S))
        return self.alpha_mgd * (generated - pred_T).pow(2).sum() / pred_S.shape[0]

    def _load_from_state_dict(
        self, state_dict: Dict, prefix: str, *args, **kwargs
    ) -> None:
        """Build the generators from checkpoint shapes when not built yet."""
        if len(self.generators) == 0:
            channels = []
            while (
                f'{prefix}generators.{len(channels)}.generation.0.weight' in state_dict
            ):
                level = f'{prefix}generators.{len(channels)}.'
                channels_T = state_dict[level + 'generation.0.weight'].shape[0]
                align = state_dict.get(level + 'align.weight')
                channels.append(
                    (channels_T if align is None else align.shape[1], channels_T)
                )
            self._build(channels)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
