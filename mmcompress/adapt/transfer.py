"""Source transferability map: weight source pixels by closeness to the target.

BiSMAP's target-to-source direction: cluster target features into prototypes
(official: 40 k-means centres of up to 1M target features), then weight each
source pixel feature ``f`` by

``w = exp(-d^2 / (dbar^2 / ln 2))``, ``d = min_k ||f - mu_k||``,

where ``dbar`` is an exponential moving average (momentum 0.99, started at the
first batch's mean) of the mean minimum distance; so ``w = 0.5`` at the mean
distance, ``w -> 1`` for source pixels that look like the target. Optionally a
per-class offset (official: normalised class entropies) is added and the result
clipped to [0, 1].

The official code computes the map offline with SimCLR ResNet-152 features; here
the module takes whatever features it is given (the segmentor passes its decoder
features, see ``segmentor.py``).
"""

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .gmm import check_features
from .kmeans import batched_kmeans, pairwise_sq_dist


class TransferabilityWeights(nn.Module):
    """Per-pixel source weights from target prototypes.

    Args:
        momentum (float): EMA momentum of the mean distance. Defaults to 0.99.
        class_offsets (Sequence[float], optional): Added to the weight of a pixel
            of class ``c`` before clipping to [0, 1]. None: no offset.
    """

    def __init__(
        self, momentum: float = 0.99, class_offsets: Optional[Sequence[float]] = None
    ) -> None:
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f'momentum must be in [0, 1), got {momentum}.')
        self.momentum = momentum
        self.class_offsets = None if class_offsets is None else list(class_offsets)
        self.register_buffer('prototypes', torch.zeros(0, 0))
        self.register_buffer('mean_distance', torch.tensor(float('nan')))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'prototypes'
        if key in state_dict:  # the prototypes' shape is set by the data
            self.prototypes = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def ready(self) -> bool:
        """Whether prototypes have been set."""
        return self.prototypes.numel() > 0

    @torch.no_grad()
    def fit_prototypes(
        self, target_features: torch.Tensor, num_prototypes: int = 40, seed: int = 0
    ) -> None:
        """K-means ``num_prototypes`` centres on ``(N, D)`` target features."""
        check_features(target_features, None, 'TransferabilityWeights')
        if len(target_features) < num_prototypes:
            raise ValueError(
                f'need at least num_prototypes={num_prototypes} target features, '
                f'got {len(target_features)}.'
            )
        centers = batched_kmeans(
            target_features.float().unsqueeze(0), num_prototypes, seed=seed
        )
        self.prototypes = centers[0].to(self.mean_distance.device)
        self.mean_distance.fill_(float('nan'))

    @torch.no_grad()
    def forward(
        self, features: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Weights of ``(N, D)`` source features; updates the distance EMA.

        Args:
            features (Tensor): ``(N, D)`` source features.
            labels (Tensor, optional): ``(N,)`` labels, for ``class_offsets``.

        Returns:
            Tensor: ``(N,)`` weights in [0, 1] (all ones before prototypes are
            set).
        """
        if not self.ready:
            return features.new_ones(len(features))
        check_features(features, self.prototypes.shape[1], 'TransferabilityWeights')
        dist2 = (
            pairwise_sq_dist(
                features.float().unsqueeze(0), self.prototypes.unsqueeze(0)
            )[0]
            .min(1)
            .values
        )
        mean = dist2.sqrt().mean()
        if torch.isnan(self.mean_distance):
            self.mean_distance.copy_(mean)
        else:
            self.mean_distance.mul_(self.momentum).add_((1 - self.momentum) * mean)
        weights = transfer_weight(dist2, self.mean_distance)
        if self.class_offsets is not None and labels is not None:
            offsets = weights.new_tensor(self.class_offsets + [0.0])
            idx = labels.long().clamp(0, len(self.class_offsets))  # ignore: 0
            weights = (weights + offsets[idx]).clamp(0, 1)
        return weights


def transfer_weight(dist2: torch.Tensor, mean_distance) -> torch.Tensor:
    """``exp(-d^2 / (dbar^2 / ln 2))`` for squared distances ``dist2``."""
    return torch.exp(-dist2 * math.log(2) / (mean_distance**2).clamp_min(1e-12))
