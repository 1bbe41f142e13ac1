"""RankMixup training as an mmpretrain classifier (needs mmpretrain).

Any mmpretrain backbone/neck/head works: the head's own loss (e.g.
cross-entropy) is computed on the raw batch only, and the mixed copies enter
only the ranking loss, as in the official trainer. Both forwards run with the
model in train mode. Pair it with
``optim_wrapper = dict(..., clip_grad=dict(max_norm=2.0))`` (official recipe).

Batch normalization of the mixed forward (``mixed_bn_stats``):

- ``'batch'`` (the official code): the mixed copies are normalized with their
  own batch statistics, which also update the running statistics. The raw and
  the mixed batch then pass through differently normalized networks, and the
  ranking loss can be met through the batch statistics alone (a whole batch
  of mixed images has a smaller variance) instead of per sample. With a
  strong ranking loss (``rankmixup-mrl-short_*``: weight 1, Beta(0.5, 0.5))
  on 10,000 Fashion-MNIST images the network learns exactly that: in train
  mode the raw batch's top logit is 5.9 and the mixed batch's 0.4, while the
  same images in one batch give 3.5 and 2.7; the running statistics, averaged
  over raw and mixed batches, fit neither, and the evaluated model is near
  chance (17 % top-1, 65 % with running statistics of raw batches only).
- ``'raw'``: every batch-norm layer normalizes the mixed copies with the
  statistics of the raw batch of the same step (gradients flow through them)
  and its running statistics are updated by the raw batch only, so raw and
  mixed samples go through the same function, as they do at test time, and
  the running statistics match the test-time inputs.
"""

from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch
from mmpretrain.models import ImageClassifier
from torch.nn.modules.batchnorm import _BatchNorm

from mmcompress.registry import MODELS
from mmcompress.utils.checks import check_number

from .rankmixup_losses import mix_inputs

#: Batch-norm statistics the mixed forward can use.
MIXED_BN_STATS = ('batch', 'raw')


def _channel_view(stat: torch.Tensor, ndim: int) -> torch.Tensor:
    """Shape a per-channel statistic ``(C,)`` to broadcast over ``(N, C, ...)``."""
    return stat.view(1, -1, *([1] * (ndim - 2)))


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
        mixed_bn_stats (str): Batch-norm statistics of the mixed forward:
            ``'batch'`` (their own, as the official code) or ``'raw'`` (the
            raw batch's; running statistics from raw batches only). See the
            module docstring. Defaults to ``'batch'``.
        **kwargs: Arguments of mmpretrain's ``ImageClassifier``
            (``backbone``, ``neck``, ``head``, ``data_preprocessor``...).
            ``train_cfg.augments`` (batch augments) are rejected because they
            would replace the raw-sample cross-entropy.
    """

    def __init__(
        self,
        rank_loss: dict,
        num_mixup: int = 1,
        mixup_alpha: float = 2.0,
        mixed_bn_stats: str = 'batch',
        **kwargs,
    ) -> None:
        train_cfg = kwargs.get('train_cfg') or {}
        if train_cfg.get('augments'):
            raise ValueError(
                'RankMixupClassifier builds its mixed copies itself; remove '
                f'train_cfg.augments={train_cfg["augments"]!r} (batch '
                'augments would replace the raw-sample cross-entropy)'
            )
        if mixed_bn_stats not in MIXED_BN_STATS:
            raise ValueError(
                f'mixed_bn_stats must be one of {MIXED_BN_STATS}, got '
                f'{mixed_bn_stats!r}'
            )
        super().__init__(**kwargs)
        if num_mixup < 1:
            raise ValueError(f'num_mixup must be >= 1, got {num_mixup}')
        check_number('mixup_alpha', mixup_alpha, low=0, low_open=True)
        self.mixed_bn_stats = mixed_bn_stats
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
        with self._record_bn_stats() as raw_stats:
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
        with self._reuse_bn_stats(raw_stats):
            mixed_logits = self.head(self.extract_feat(mixed_inputs))
        losses['loss_rank'] = self.rank_loss(raw_logits, mixed_logits, mixed_targets)
        return losses

    def _training_bns(self) -> List[_BatchNorm]:
        """Batch-norm layers that use batch statistics in this forward."""
        return [m for m in self.modules() if isinstance(m, _BatchNorm) and m.training]

    @contextmanager
    def _record_bn_stats(self) -> Iterator[dict]:
        """Record each training batch-norm layer's input batch statistics
        (mean and biased variance, as batch norm normalizes with), with
        ``mixed_bn_stats='raw'``; otherwise record nothing."""
        stats = {}
        if self.mixed_bn_stats == 'batch':
            yield stats
            return

        def record(module, args):
            x = args[0]
            dims = [0, *range(2, x.dim())]
            stats[module] = (x.mean(dims), x.var(dims, unbiased=False))

        handles = [bn.register_forward_pre_hook(record) for bn in self._training_bns()]
        try:
            yield stats
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def _reuse_bn_stats(self, stats: dict) -> Iterator[None]:
        """Normalize with the recorded statistics and leave the running
        statistics untouched (nothing to do when ``stats`` is empty)."""
        if not stats:
            yield
            return

        def normalize(module, args, output):
            x = args[0]
            mean, var = stats[module]
            out = (x - _channel_view(mean, x.dim())) * _channel_view(
                torch.rsqrt(var + module.eps), x.dim()
            )
            if module.affine:
                out = out * _channel_view(module.weight, x.dim()) + _channel_view(
                    module.bias, x.dim()
                )
            return out

        bns = list(stats)
        handles = [bn.register_forward_hook(normalize) for bn in bns]
        for bn in bns:  # eval mode: no running-statistics update
            bn.train(False)
        try:
            yield
        finally:
            for bn in bns:
                bn.train(True)
            for handle in handles:
                handle.remove()
