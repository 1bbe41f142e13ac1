"""Per-step 1x1 classifiers with an auxiliary (or background) classifier.

``heads[0]`` is DKD's auxiliary "unknown" classifier, fed with detached
features so that no gradient reaches the feature extractor through it
(``head_type='sigmoid'``), or the background classifier of a softmax model
(``head_type='softmax'``, MiB). ``heads[k + 1]`` scores the classes step
``k`` added. The official DKD model (``models/model.py``) is built the same
way; its classifier weights are Kaiming-normal initialised.
"""

import math
from typing import List, Tuple

import torch
from torch import Tensor, nn

HEAD_TYPES = ('sigmoid', 'softmax')


class IncrementalClassifier(nn.Module):
    """1x1 convolutions: auxiliary/background, then one per step.

    Args:
        in_channels (int): Feature channels.
        step_sizes (list[int]): Classes added by steps 0..t.
        head_type (str): ``'sigmoid'`` (DKD) or ``'softmax'`` (MiB).
    """

    def __init__(
        self, in_channels: int, step_sizes: List[int], head_type: str = 'sigmoid'
    ) -> None:
        super().__init__()
        if head_type not in HEAD_TYPES:
            raise ValueError(
                f'head_type={head_type!r} is invalid; use one of {HEAD_TYPES}.'
            )
        self.head_type = head_type
        self.heads = nn.ModuleList(
            nn.Conv2d(in_channels, size, kernel_size=1) for size in [1] + step_sizes
        )
        for head in self.heads:
            nn.init.kaiming_normal_(head.weight)

    def forward(self, feats: Tensor) -> Tensor:
        """Logits (N, 1 + sum(step_sizes), h, w): channel 0 is the auxiliary
        (sigmoid: on detached features) or background classifier."""
        first = feats.detach() if self.head_type == 'sigmoid' else feats
        return torch.cat(
            [self.heads[0](first)] + [head(feats) for head in self.heads[1:]], dim=1
        )

    def decompose(self, feats: Tensor) -> Tuple[Tensor, Tensor]:
        """Positive and negative reasoning of the class logits (DKD).

        With ``W+ = max(W, 0)`` and ``W- = min(W, 0)`` of the class heads
        (``heads[1:]``, auxiliary excluded), ``pos = x W+^T`` and
        ``neg = x W-^T``, without bias: ``pos + neg + b`` are the class
        logits.

        Args:
            feats (Tensor): (N, C, h, w) features.

        Returns:
            tuple[Tensor, Tensor]: (N, sum(step_sizes), h, w) each.
        """
        weight = torch.cat([head.weight for head in self.heads[1:]], dim=0)
        weight = weight.flatten(1)
        pos = torch.einsum('nchw,kc->nkhw', feats, weight.clamp(min=0))
        neg = torch.einsum('nchw,kc->nkhw', feats, weight.clamp(max=0))
        return pos, neg

    @staticmethod
    def novel_init_state(
        aux_weight: Tensor, aux_bias: Tensor, size: int, head_type: str
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Initial weight and bias of a new step's head from ``heads[0]``.

        Sigmoid (DKD ``init_novel_classifier``): every row is a copy of the
        auxiliary classifier. Softmax (MiB's initialisation): every row is
        the background classifier with bias ``b_bg - log(size + 1)``, which
        also becomes the background bias, so that the background probability
        is shared between background and the new classes.

        Args:
            aux_weight (Tensor): (1, C, 1, 1) weight of ``heads[0]``.
            aux_bias (Tensor): (1,) bias of ``heads[0]``.
            size (int): Classes of the new step.
            head_type (str): ``'sigmoid'`` or ``'softmax'``.

        Returns:
            tuple[Tensor, Tensor, Tensor]: New head weight (size, C, 1, 1),
            its bias (size,), and the bias of ``heads[0]`` to load.
        """
        weight = aux_weight.repeat(size, 1, 1, 1)
        if head_type == 'sigmoid':
            return weight, aux_bias.repeat(size), aux_bias.clone()
        bias = aux_bias - math.log(size + 1)
        return weight, bias.repeat(size), bias.clone()
