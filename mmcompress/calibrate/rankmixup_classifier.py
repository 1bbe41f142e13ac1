"""RankMixup training as an mmpretrain classifier (needs mmpretrain).

Any mmpretrain backbone/neck/head works: the head's own loss (e.g.
cross-entropy) is computed on the raw batch only, and the mixed copies enter
only the ranking loss, as in the official trainer. Both forwards run with the
model in train mode (BN statistics updated by both). Pair it with
``optim_wrapper = dict(..., clip_grad=dict(max_norm=2.0))`` (official recipe).
"""

from typing import Dict, List

import torch
from mmpretrain.models import ImageClassifier

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .rankmixup_losses import mix_inputs


@MODELS.register_module()
class RankMixupClassifier(ImageClassifier):
    """Image classifier trained with CE + ``RankMixup`` ranking loss.

    Example::

        model = dict(type='RankMixupClassifier',
                     backbone=..., neck=..., head=dict(type='LinearClsHead', ...),
                     rank_loss=dict(type='MixupMarginRankingLoss', margin=2.0,
                                    loss_weight=0.1),
                     num_mixup=1, mixup_alpha=2.0)

    Args:
        rank_loss (dict): Config of the ranking loss
            (``MixupMarginRankingLoss`` or ``MixupNDCGLoss``).
        num_mixup (int): Mixed copies per batch M (1 for MRL, 3 for M-NDCG
            in the paper). Defaults to 1.
        mixup_alpha (float): Beta(a, a) parameter of the mixing coefficients
            (2.0 on CIFAR, 1.0 on Tiny-ImageNet). Defaults to 2.0.
        **kwargs: Arguments of mmpretrain's ``ImageClassifier``
            (``backbone``, ``neck``, ``head``, ``data_preprocessor``...).
            ``train_cfg.augments`` (batch augments) are rejected because they
            would replace the raw-sample cross-entropy.
    """

    def __init__(
        self, rank_loss: dict, num_mixup: int = 1, mixup_alpha: float = 2.0, **kwargs
    ) -> None:
        train_cfg = kwargs.get('train_cfg') or {}
        if train_cfg.get('augments'):
            raise ValueError(
                'RankMixupClassifier builds its mixed copies itself; remove '
                f'train_cfg.augments={train_cfg["augments"]!r} (batch '
                'augments would replace the raw-sample cross-entropy)'
            )
        super().__init__(**kwargs)
        if num_mixup < 1:
            raise ValueError(f'num_mixup must be >= 1, got {num_mixup}')
        check_number('mixup_alpha', mixup_alpha, low=0, low_open=True)
        self.rank_loss = MODELS.build(rank_loss)
        self.num_mixup = num_mixup
        self.mixup_alpha = mixup_alpha

    def loss(self, inputs: torch.Tensor, data_samples: List) -> Dict[str, torch.Tensor]:
        """Head loss on the raw batch plus the ranking loss on mixed copies.

        Args:
            inputs (torch.Tensor): Preprocessed images ``(B, C, H, W)``.
            data_samples (List[DataSample]): With ``gt_label``.

        Returns:
            dict: The head's losses and ``loss_rank``.
        """
        feats = self.extract_feat(inputs)
        losses = self.head.loss(feats, data_samples)
        raw_logits = self.head(feats)
        labels = torch.cat([sample.gt_label for sample in data_samples])
        mixed_inputs, mixed_targets, _ = mix_inputs(
            inputs,
            labels.to(inputs.device),
            raw_logits.shape[1],
            self.num_mixup,
            self.mixup_alpha,
        )
        mixed_logits = self.head(self.extract_feat(mixed_inputs))
        losses['loss_rank'] = self.rank_loss(raw_logits, mixed_logits, mixed_targets)
        return losses
