"""Limited-data two-stage knowledge distillation (Yuan et al., ICPR 2020).

Stage 1 (block-wise) is the unit-wise reconstruction of :mod:`.reconstruct`:
each quantized unit is fitted to the float unit's output. Stage 2 (joint) is
:func:`distill`: the whole quantized model is trained end to end against the
float model's outputs on the same few images, every parameter at once (the
float weights behind the weight quantizers, through their straight-through
estimator, the LSQ steps, the BN affine parameters and the float layers;
``train_weights=False`` keeps the quantized layers' weights, so the rounding
stage 1 learned stays, and trains the rest)::

    loss = T^2 * KL(softmax(z_T / T) || softmax(z_S / T))     (loss='kl')
    loss = sum over output tensors of mean((z_S - z_T)^2)       (loss='mse')

with ``z_T`` the float model's and ``z_S`` the quantized model's tensor-mode
output (logits for a classifier; ``'mse'`` serves any model whose tensor mode
returns tensors, e.g. a detector's head maps). The model stays in eval mode: the
BN running statistics of the pretrained model are kept (a few images per class
would give poor ones). Adam with a cosine-decayed learning rate.

:func:`images_per_class` draws the limited data: ``k`` images of every class
(``dataset.get_cat_ids``; a detection image counts for the first of its classes
that still needs images).

The result stays an ordinary ``QuantizedModel`` state: weights are float
(rounded by their quantizer at run time) and steps are LSQ steps.
"""

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.utils import ProgressBar
from torch import Tensor

from ...utils.checks import check_number
from .calibration import batch_size as images_in
from .calibration import quant_layers, quantizers_off, tensor_forward

KD_LOSSES = ('kl', 'mse')


def images_per_class(dataset, k: int, seed: int = 0) -> List[int]:
    """Indices of ``k`` images per class, drawn in a seeded random order.

    Args:
        dataset: A dataset with ``get_cat_ids(idx)`` (mmpretrain, mmdet).
        k (int): Images per class.
        seed (int): Seed of the order. Defaults to 0.

    Returns:
        list[int]: The indices, class by class in order of class id.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f'images_per_class must be an int >= 1, got {k!r}')
    if not hasattr(dataset, 'get_cat_ids'):
        raise TypeError(
            f'images_per_class needs a dataset with get_cat_ids (mmpretrain, '
            f'mmdet); {type(dataset).__name__} has none. Use num_images instead'
        )
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    chosen: Dict[int, List[int]] = {}
    for idx in order.tolist():
        for cat in dataset.get_cat_ids(idx):
            picked = chosen.setdefault(int(cat), [])
            if len(picked) < k:
                picked.append(idx)
                break
        if classes and len(chosen) == len(classes):
            if all(len(v) == k for v in chosen.values()):
                break
    if not chosen:
        raise ValueError(f'{type(dataset).__name__} holds no labelled image')
    short = {c: len(v) for c, v in chosen.items() if len(v) < k}
    if short:
        raise ValueError(
            f'images_per_class={k}: classes {short} (class: images) have fewer '
            f'images in {type(dataset).__name__} of {len(dataset)}; lower it'
        )
    return [i for c in sorted(chosen) for i in chosen[c]]


def _tensors(output) -> List[Tensor]:
    """The tensors of a tensor-mode output (nested tuples, lists, dicts)."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for part in output for t in _tensors(part)]
    return []


def kd_loss(student, teacher, loss: str = 'kl', temperature: float = 1.0) -> Tensor:
    """Stage-2 loss between tensor-mode outputs (module docstring).

    Args:
        student: The quantized model's output.
        teacher: The float model's output (same structure).
        loss (str): ``'kl'`` (a ``(N, C)`` logits tensor) or ``'mse'``.
        temperature (float): ``T`` of ``'kl'``. Defaults to 1.

    Returns:
        Tensor: The scalar loss (``'kl'``: batch mean).
    """
    if loss == 'kl':
        if not (isinstance(student, Tensor) and student.dim() == 2):
            got = (
                f'a tensor of shape {tuple(student.shape)}'
                if isinstance(student, Tensor)
                else f'a {type(student).__name__}'
            )
            raise TypeError(
                "kd loss 'kl' needs (N, C) logits from the model's tensor mode, "
                f"got {got}; use loss='mse' for detectors and segmentors"
            )
        log_p = F.log_softmax(student / temperature, dim=1)
        q = F.softmax(teacher / temperature, dim=1)
        return F.kl_div(log_p, q, reduction='batchmean') * temperature**2
    if loss == 'mse':
        pairs = list(zip(_tensors(student), _tensors(teacher)))
        if not pairs:
            raise TypeError(
                f"kd loss 'mse' found no tensor in the model's tensor-mode output "
                f'({type(student).__name__})'
            )
        return sum(F.mse_loss(s, t) for s, t in pairs)
    raise ValueError(f'kd loss must be one of {KD_LOSSES}, got {loss!r}')


def _sampler(batches: List[dict], size: int, generator: torch.Generator):
    """Random mini-batches of ``size`` images from the cached batches (whole
    cached batches in random order when their input shapes differ)."""
    inputs = [b['inputs'] for b in batches]
    same = all(isinstance(x, Tensor) for x in inputs) and (
        len({tuple(x.shape[1:]) for x in inputs}) == 1
    )
    if not same:
        while True:
            for i in torch.randperm(len(batches), generator=generator).tolist():
                yield batches[i]
    pool = torch.cat(inputs)
    samples = [s for b in batches for s in (b.get('data_samples') or [])]
    while True:
        idx = torch.randint(
            pool.shape[0], (min(size, pool.shape[0]),), generator=generator
        )
        data = dict(inputs=pool[idx])
        if len(samples) == pool.shape[0]:
            data['data_samples'] = [samples[i] for i in idx.tolist()]
        yield data


def _mean_loss(model, teacher, batches, loss, temperature) -> float:
    """``kd_loss`` over every cached batch, image-weighted."""
    total = 0.0
    with torch.no_grad():
        for data in batches:
            with quantizers_off(teacher):
                target = tensor_forward(teacher, data)
            value = kd_loss(tensor_forward(model, data), target, loss, temperature)
            total += value.item() * images_in(data)
    return total / sum(images_in(b) for b in batches)


def distill(
    model: nn.Module,
    teacher: nn.Module,
    batches: Sequence[dict],
    iters: int = 500,
    batch_size: int = 32,
    lr: float = 1e-4,
    loss: str = 'kl',
    temperature: float = 1.0,
    train_weights: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> Dict[str, float]:
    """Stage 2: train the calibrated quantized ``model`` against ``teacher``.

    Args:
        model (nn.Module): Calibrated (and possibly reconstructed) quantized
            model; trained in place, in eval mode.
        teacher (nn.Module): The float model (a copy of the quantized model
            taken before calibration works: it runs with its quantizers off).
        batches (Sequence[dict]): Preprocessed batches (the limited data).
        iters (int): Adam iterations. Defaults to 500.
        batch_size (int): Images per iteration. Defaults to 32.
        lr (float): Initial Adam lr, cosine-decayed to 0. Defaults to 1e-4.
        loss (str): ``'kl'`` or ``'mse'`` (:func:`kd_loss`). Defaults to 'kl'.
        temperature (float): ``T`` of ``'kl'``. Defaults to 1.
        train_weights (bool): Train the weights of the weight-quantized
            layers. False keeps them (and so the rounding that stage 1
            learned, up to step changes) and trains the rest: LSQ steps, BN
            affine parameters, float layers. Defaults to True.
        seed (int): Seed of the mini-batch sampling. Defaults to 0.
        progress (bool): Progress bar. Defaults to True.

    Returns:
        dict: ``kd_before`` / ``kd_after``: the loss on all ``batches``.
    """
    if loss not in KD_LOSSES:
        raise ValueError(f'kd loss must be one of {KD_LOSSES}, got {loss!r}')
    for key, value in dict(iters=iters, batch_size=batch_size).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'kd {key} must be an int >= 1, got {value!r}')
    check_number('lr', lr, 0, low_open=True, owner='kd')
    check_number('temperature', temperature, 0, low_open=True, owner='kd')
    if not batches:
        raise ValueError('kd needs at least one batch of images; got 0')
    model.eval()
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    if not isinstance(train_weights, bool):
        raise TypeError(f'kd train_weights must be a bool, got {train_weights!r}')
    before = _mean_loss(model, teacher, batches, loss, temperature)
    kept = set()
    if not train_weights:
        layers = quant_layers(model).values()
        kept = {id(m.weight) for m in layers if m.weight_quantizer is not None}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in kept]
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * t / iters))
    )
    sampler = _sampler(list(batches), batch_size, torch.Generator().manual_seed(seed))
    bar = ProgressBar(iters) if progress else None
    for _ in range(iters):
        data = next(sampler)
        with torch.no_grad(), quantizers_off(teacher):
            target = tensor_forward(teacher, data)
        value = kd_loss(tensor_forward(model, data), target, loss, temperature)
        model.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
        if bar is not None:
            bar.update()
    model.zero_grad(set_to_none=True)
    if bar is not None:
        print()
    after = _mean_loss(model, teacher, batches, loss, temperature)
    MMLogger.get_current_instance().info(
        f'PTQ stage-2 KD ({iters} iterations, {loss}): loss on the '
        f'{sum(images_in(b) for b in batches)} images {before:.4g} -> {after:.4g}'
    )
    return dict(kd_before=before, kd_after=after)


def limited_loader(loader, k: int, seed: int = 0, batch: Optional[int] = None):
    """A dataloader over :func:`images_per_class` of ``loader``'s dataset.

    Args:
        loader (DataLoader): Built from the calibration dataloader config.
        k (int): Images per class.
        seed (int): Seed of the draw. Defaults to 0.
        batch (int, optional): Batch size; defaults to ``loader``'s.

    Returns:
        DataLoader: Unshuffled, in the process, with ``loader``'s collate.
    """
    indices = images_per_class(loader.dataset, k, seed)
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(loader.dataset, indices),
        batch_size=batch or loader.batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=loader.collate_fn,
    )
