"""FFL: Feature Fusion for online mutual knowledge distillation
(Kim, Hyun, Chung, Kwak, ICPR 2020), as an mmpretrain classifier.

A shared trunk (the first stages of an mmpretrain ResNet-family backbone)
feeds ``num_branches`` private copies of the remaining stages. Each branch has
its own classifier; a fusion module (depthwise 3x3 + BN + ReLU, pointwise 1x1
+ BN + ReLU, global pooling, FC) classifies the concatenated branch features.
Training loss (official code, T=3):

.. math::
    L = \\sum_i CE(z_i) + CE(z_f) + w(e) \\big[\\sum_i KL(z_f \\to z_i) +
        KL(z_e \\to z_f)\\big]

with :math:`z_e` the mean of the branch logits, :math:`KL(a \\to b)` the
temperature-scaled KL with a (detached, +1e-7 as the official ``KLLoss``) as
target and b as prediction, and the sigmoid ramp-up
:math:`w(e) = \\exp(-5 (1 - \\min(e, 80) / 80)^2)`.

This module needs mmpretrain; it is imported by ``mmcompress.distill`` only
when mmpretrain is installed.
"""

import copy
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import ModuleList
from mmengine.registry import DefaultScope
from mmpretrain.models.classifiers import BaseClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample

from mmcompress.registry import MODELS

from .losses.base import check_choice, check_positive, soft_kl_divergence

FFL_TARGET_EPS = 1e-7


def build_in_mmpretrain_scope(cfg: dict) -> nn.Module:
    """Build ``cfg`` from mmpretrain's registry whatever the current default
    scope (a scope prefix such as ``'mmdet.ResNet'`` still wins)."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MMPRETRAIN_MODELS.build(copy.deepcopy(cfg))


def ffl_rampup_weight(progress: float, rampup_length: float) -> float:
    """Sigmoid-shaped ramp-up ``exp(-5 (1 - min(progress, L) / L)^2)``.

    Args:
        progress (float): Current epoch (or iteration), starting at 0.
        rampup_length (float): Ramp length L; 0 means no ramp (weight 1).

    Returns:
        float: The weight in (0, 1].
    """
    if rampup_length == 0:
        return 1.0
    phase = 1.0 - min(max(progress, 0.0), rampup_length) / rampup_length
    return math.exp(-5.0 * phase * phase)


@MODELS.register_module()
class FFLFusionModule(nn.Module):
    """FFL fusion classifier over the concatenated branch features.

    ``cat(f_1..f_n)`` (n*C channels) -> depthwise 3x3 conv + BN + ReLU ->
    pointwise 1x1 conv (n*C -> C) + BN + ReLU -> global average pooling ->
    FC to the class logits.

    Args:
        in_channels (int): Channels C of each branch feature.
        num_branches (int): Number of branches n.
        num_classes (int): Number of classes.
    """

    def __init__(self, in_channels: int, num_branches: int, num_classes: int) -> None:
        super().__init__()
        self.num_branches = num_branches
        fused = in_channels * num_branches
        self.depthwise = nn.Sequential(
            nn.Conv2d(fused, fused, 3, padding=1, groups=fused, bias=False),
            nn.BatchNorm2d(fused),
            nn.ReLU(inplace=True),
        )
        self.pointwise = nn.Sequential(
            nn.Conv2d(fused, in_channels, 1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse the branch feature maps (each N x C x H x W) into logits."""
        if len(features) != self.num_branches:
            raise ValueError(
                f'FFLFusionModule expects {self.num_branches} '
                f'branch features, got {len(features)}'
            )
        shapes = {tuple(f.shape) for f in features}
        if len(shapes) != 1:
            raise ValueError(
                f'FFLFusionModule: branch features must share '
                f'one shape to be concatenated, got '
                f'{sorted(shapes)}'
            )
        fused = self.pointwise(self.depthwise(torch.cat(features, dim=1)))
        return self.fc(self.pool(fused).flatten(1))


@MODELS.register_module()
class FFLClassifier(BaseClassifier):
    """Multi-branch classifier trained with FFL (see the module docstring).

    The backbone config must build an mmpretrain ResNet-family backbone
    (``ResNet``, ``ResNet_CIFAR``, ``ResNetV1c/d``, ``ResNeXt``...). Its
    stages ``[0, split_stage)`` form the shared trunk (kept as
    ``self.backbone``, so an ordinary classifier checkpoint initialises it);
    each branch is another build of the backbone config reduced to the
    stages ``[split_stage, num_stages)`` (so it keeps the backbone's own
    ``init_weights``: init_cfg, zero-init residual), plus a GAP + FC
    classifier; branch parameters are named ``branches.<i>.layer<k>...``. The
    official CIFAR ResNet-32 setting shares the stem and two of three stages
    (``split_stage=2``).

    For the official optimiser setting (fusion weight decay 1e-5 vs 1e-4)
    use ``paramwise_cfg=dict(custom_keys={'fusion': dict(decay_mult=0.1)})``.

    Args:
        backbone (dict): Config of the ResNet-family backbone.
        num_classes (int): Number of classes.
        split_stage (int): Index of the first per-branch stage, in
            ``[1, num_stages - 1]``.
        num_branches (int): Number of branches (>= 2). Defaults to 2.
        temperature (float): KD temperature. Defaults to 3.0 (official).
        kd_weight (float): Weight of the KD terms after the ramp-up.
            Defaults to 1.0 (official).
        rampup_length (float): Ramp-up length, in ``rampup_unit``.
            Defaults to 80 (official, epochs).
        rampup_unit (str): ``'epoch'`` or ``'iter'``; the current value is
            read from the mmengine ``MessageHub`` (0 outside a runner).
            Defaults to ``'epoch'``.
        predict_from (str | int): Logits used for prediction and
            ``mode='tensor'``: ``'fused'`` (default), ``'ensemble'`` (mean of
            the branch logits) or a branch index.
        loss_cls (dict): Classification loss config (mmpretrain scope).
            Defaults to ``dict(type='CrossEntropyLoss', loss_weight=1.0)``.
        train_cfg (dict, optional): Training config, e.g. batch augments
            (as mmpretrain's ``ImageClassifier``). Defaults to None.
        data_preprocessor (dict, optional): Data preprocessor config;
            ``ClsDataPreprocessor`` by default.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(
        self,
        backbone: dict,
        num_classes: int,
        split_stage: int,
        num_branches: int = 2,
        temperature: float = 3.0,
        kd_weight: float = 1.0,
        rampup_length: float = 80,
        rampup_unit: str = 'epoch',
        predict_from: Union[str, int] = 'fused',
        loss_cls: Optional[dict] = None,
        train_cfg: Optional[dict] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
        data_preprocessor.setdefault('batch_augments', train_cfg)
        super().__init__(
            init_cfg=init_cfg,
            data_preprocessor=build_in_mmpretrain_scope(data_preprocessor),
        )
        if (
            isinstance(num_branches, bool)
            or not isinstance(num_branches, int)
            or num_branches < 2
        ):
            raise ValueError(f'num_branches must be an int >= 2, got {num_branches!r}')
        self.num_branches = num_branches
        self.temperature = check_positive('temperature', temperature)
        self.kd_weight = check_positive('kd_weight', kd_weight, allow_zero=True)
        self.rampup_length = check_positive(
            'rampup_length', rampup_length, allow_zero=True
        )
        check_choice('rampup_unit', rampup_unit, ('epoch', 'iter'))
        self.rampup_unit = rampup_unit
        valid_predict = ('fused', 'ensemble') + tuple(range(num_branches))
        if isinstance(predict_from, bool):
            raise ValueError(
                f'predict_from must be one of {valid_predict}, got {predict_from!r}'
            )
        check_choice('predict_from', predict_from, valid_predict)
        self.predict_from = predict_from

        self.backbone = build_in_mmpretrain_scope(backbone)
        stage_names = self._check_split(self.backbone, split_stage)
        self.split_stage = split_stage
        self._keep_stages(self.backbone, stage_names[:split_stage])
        self.backbone.out_indices = (split_stage - 1,)
        branches = []
        for _ in range(num_branches):
            branch = build_in_mmpretrain_scope(backbone)
            self._keep_stages(branch, stage_names[split_stage:])
            branch.frozen_stages = -1
            branches.append(branch)
        # mmengine's ModuleList forwards init_weights() to each branch
        self.branches = ModuleList(branches)
        channels = self.backbone.feat_dim
        self.branch_heads = nn.ModuleList(
            nn.Linear(channels, num_classes) for _ in range(num_branches)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fusion = FFLFusionModule(channels, num_branches, num_classes)
        self.loss_cls = build_in_mmpretrain_scope(
            loss_cls or dict(type='CrossEntropyLoss', loss_weight=1.0)
        )

    @staticmethod
    def _check_split(backbone: nn.Module, split_stage: int) -> List[str]:
        """Validate ``split_stage`` for ``backbone``; return its stage names."""
        stage_names = getattr(backbone, 'res_layers', None)
        if stage_names is None or not hasattr(backbone, 'feat_dim'):
            raise TypeError(
                f'FFLClassifier needs an mmpretrain ResNet-family backbone '
                f'(with res_layers and feat_dim), got '
                f'{type(backbone).__name__}'
            )
        if (
            isinstance(split_stage, bool)
            or not isinstance(split_stage, int)
            or not 1 <= split_stage < len(stage_names)
        ):
            raise ValueError(
                f'split_stage must be an int in [1, {len(stage_names) - 1}] '
                f'for a backbone with {len(stage_names)} stages, got '
                f'{split_stage!r}'
            )
        if backbone.frozen_stages > split_stage:
            raise ValueError(
                f'backbone frozen_stages={backbone.frozen_stages} freezes '
                f'stages beyond the shared trunk (split_stage={split_stage}); '
                f'use frozen_stages <= {split_stage}'
            )
        return list(stage_names)

    @staticmethod
    def _keep_stages(backbone: nn.Module, keep: List[str]) -> None:
        """Drop the stages of ``backbone`` that are not in ``keep``.

        For a branch (``keep`` = the later stages) the stem goes as well: a
        branch keeps only its stages, with the backbone's own
        ``init_weights`` (init_cfg, zero-init residual) and ``train``.
        """
        is_trunk = keep[0] == backbone.res_layers[0]
        for name, _ in list(backbone.named_children()):
            if (
                name in backbone.res_layers
                and name not in keep
                or (not is_trunk and name not in keep)
            ):
                delattr(backbone, name)
        backbone.res_layers = list(keep)

    @staticmethod
    def _run_stages(branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run the stages kept in a branch."""
        for name in branch.res_layers:
            x = getattr(branch, name)(x)
        return x

    def extract_feat(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        """Branch feature maps (one N x C x H x W tensor per branch)."""
        shared = self.backbone(inputs)[-1]
        return [self._run_stages(branch, shared) for branch in self.branches]

    def forward_logits(
        self, inputs: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Logits of every branch and of the fusion classifier.

        Returns:
            tuple[list[Tensor], Tensor]: Branch logits and fused logits.
        """
        features = self.extract_feat(inputs)
        branch_logits = [
            head(self.pool(feature).flatten(1))
            for head, feature in zip(self.branch_heads, features)
        ]
        return branch_logits, self.fusion(features)

    def select_logits(
        self, branch_logits: List[torch.Tensor], fused_logits: torch.Tensor
    ) -> torch.Tensor:
        """The logits named by ``predict_from``."""
        if self.predict_from == 'fused':
            return fused_logits
        if self.predict_from == 'ensemble':
            return torch.stack(branch_logits).mean(0)
        return branch_logits[self.predict_from]

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: Optional[List[DataSample]] = None,
        mode: str = 'tensor',
    ):
        """``'tensor'``: selected logits; ``'loss'``: loss dict;
        ``'predict'``: list of :obj:`DataSample`."""
        if mode == 'tensor':
            return self.select_logits(*self.forward_logits(inputs))
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise ValueError(f"mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    def consistency_weight(self) -> float:
        """``kd_weight * w(progress)`` with progress from the MessageHub."""
        progress = MessageHub.get_current_instance().get_info(self.rampup_unit, 0)
        return self.kd_weight * ffl_rampup_weight(progress, self.rampup_length)

    def loss(
        self, inputs: torch.Tensor, data_samples: List[DataSample]
    ) -> Dict[str, torch.Tensor]:
        """Compute the FFL losses of a batch (see :meth:`ffl_losses`)."""
        branch_logits, fused_logits = self.forward_logits(inputs)
        if 'gt_score' in data_samples[0]:
            targets = torch.stack([sample.gt_score for sample in data_samples])
        else:
            targets = torch.cat([sample.gt_label for sample in data_samples])
        return self.ffl_losses(
            branch_logits, fused_logits, targets, self.consistency_weight()
        )

    def ffl_losses(
        self,
        branch_logits: List[torch.Tensor],
        fused_logits: torch.Tensor,
        targets: torch.Tensor,
        weight: float,
    ) -> Dict[str, torch.Tensor]:
        """CE of every classifier plus the weighted mutual KD terms.

        Args:
            branch_logits (list[Tensor]): Logits (N, K) of each branch.
            fused_logits (Tensor): Logits (N, K) of the fusion classifier.
            targets (Tensor): Class indices (N,) or soft scores (N, K).
            weight (float): Current KD weight ``kd_weight * w(e)``.

        Returns:
            dict[str, Tensor]: ``loss_cls_branch{i}``, ``loss_cls_fused``,
            ``loss_kd_branches`` (fused -> each branch), ``loss_kd_fused``
            (ensemble -> fused) and the logged, not summed, ``kd_weight``.
        """
        num = fused_logits.shape[0]
        losses = {
            f'loss_cls_branch{i}': self.loss_cls(logits, targets, avg_factor=num)
            for i, logits in enumerate(branch_logits)
        }
        losses['loss_cls_fused'] = self.loss_cls(fused_logits, targets, avg_factor=num)
        ensemble = torch.stack(branch_logits).mean(0)
        losses['loss_kd_branches'] = weight * sum(
            soft_kl_divergence(
                logits, fused_logits, self.temperature, 'batchmean', FFL_TARGET_EPS
            )
            for logits in branch_logits
        )
        losses['loss_kd_fused'] = weight * soft_kl_divergence(
            fused_logits, ensemble, self.temperature, 'batchmean', FFL_TARGET_EPS
        )
        losses['kd_weight'] = fused_logits.new_tensor(weight)
        return losses

    def predict(
        self,
        inputs: torch.Tensor,
        data_samples: Optional[List[DataSample]] = None,
        **kwargs,
    ) -> List[DataSample]:
        """Predict with the logits named by ``predict_from``."""
        scores = self.forward(inputs, mode='tensor').softmax(dim=1)
        labels = scores.argmax(dim=1, keepdim=True).detach()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for sample, score, label in zip(data_samples, scores, labels):
            sample.set_pred_score(score).set_pred_label(label)
        return data_samples
