"""Re-estimation of batch-norm running statistics from a set of batches.

Running statistics can stop matching the inputs a model sees at test time:
RankMixup's official mixed forward updates them with batches of mixed images
(``RankMixupClassifier(mixed_bn_stats='batch')``), a one-shot supernet shares
them between subnets. :func:`recompute_bn_statistics` replaces them by the
exact average over the given batches, leaving every weight unchanged;
:func:`recompute_bn_statistics_from_loader` does it for an OpenMMLab model on
the first images of a dataloader.
"""

import itertools
import math
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def recompute_bn_statistics(
    model: nn.Module,
    batches: Iterable[Any],
    forward: Optional[Callable[[Any], Any]] = None,
) -> int:
    """Replace the running mean and variance of every batch-norm layer of
    ``model`` by their average over ``batches``.

    Each layer's statistics are reset and accumulated as a cumulative average
    (``momentum=None``) while ``forward`` runs on every batch with the model in
    train mode and without gradients; afterwards each layer's momentum and the
    model's train/eval mode are restored (``num_batches_tracked`` counts
    the batches). Weights, biases and the affine parameters do not change.

    Args:
        model (nn.Module): The model; must contain batch-norm layers.
        batches (Iterable): The batches, e.g. a training dataloader (not
            empty).
        forward (Callable, optional): Runs the model on one batch. Defaults to
            ``model(batch)``.

    Returns:
        int: The number of batches seen.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not layers:
        raise ValueError(
            f'{type(model).__name__} has no batch-norm layer: there are no '
            'running statistics to recompute'
        )
    untracked = [m for m in layers if not m.track_running_stats]
    if untracked:
        raise ValueError(
            f'{len(untracked)} batch-norm layer(s) of {type(model).__name__} do not '
            'track running statistics (track_running_stats=False): they use batch '
            'statistics at test time and have none to recompute'
        )
    forward = forward or model
    saved = [
        (m, m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in layers
    ]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    seen = 0
    try:
        for batch in batches:
            forward(batch)
            seen += 1
    finally:
        model.train(was_training)
        for m, momentum, mean, var in saved:
            m.momentum = momentum
            if not seen:  # nothing was averaged: keep the old statistics
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
    if not seen:
        raise ValueError(
            'recompute_bn_statistics got no batch: the running statistics are '
            'left unchanged; pass a non-empty iterable of batches'
        )
    return seen


def recompute_bn_statistics_from_loader(
    model: nn.Module, loader, num_images: int
) -> int:
    """:func:`recompute_bn_statistics` of an OpenMMLab model (an mmengine
    ``BaseModel``) over the first images of a dataloader.

    The first ``ceil(num_images / loader.batch_size)`` batches go through the
    model's data preprocessor without batch augments (``training=False``) and
    the model's ``mode='tensor'`` forward.

    Args:
        model (nn.Module): The model, with a ``data_preprocessor``.
        loader (DataLoader): Batches of the model's data samples.
        num_images (int): Images to average over (rounded up to whole
            batches).

    Returns:
        int: The number of images used.
    """
    batches = itertools.islice(loader, math.ceil(num_images / loader.batch_size))
    images = []

    def forward(data):
        data = model.data_preprocessor(data, False)
        images.append(len(data['inputs']))
        model(**data, mode='tensor')

    recompute_bn_statistics(model, batches, forward)
    return sum(images)
