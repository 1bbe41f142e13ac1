"""Layer-wise (AdaRound) and unit-wise (BRECQ / UWC) weight-rounding reconstruction.

A *unit* is any module of the model (a residual block, a stage, a neck, or one
quantized layer for layer-wise AdaRound), chosen by name patterns; no tracing.
Units are reconstructed one after the other in module order. For each unit:

1. the float model (a copy taken before the first unit, every quantizer
   off) runs the calibration batches and the
   unit's output ``z`` is recorded (with ``loss='fisher'`` also the gradient
   ``dL/dz`` of the model's own training loss, ``mode='loss'`` with the
   batch's labels: UWC's diagonal second-order weight ``E[(dL/dz)^2]``);
2. the quantized model (earlier units already hard-rounded) runs them and the
   unit's input is recorded (BRECQ's ``asym=True``: quantized input, float
   target);
3. every quantized layer of the unit gets an :class:`AdaRoundQuantizer`; Adam
   (lr ``lr``) on the ``V`` s minimises
   ``rec(z_hat, z) + lambda * sum(1 - |2h(V)-1|^beta)`` over ``iters`` random
   mini-batches of ``batch_size`` samples, ``rec = sum_c (z_hat - z)^2`` averaged
   over samples (``'mse'``) or weighted by ``(dL/dz)^2`` normalised to mean 1
   (``'fisher'``), as BRECQ's ``lp_loss`` / ``fisher_diag``; with
   ``learn_act_steps`` the unit's LSQ activation steps are learned in the
   same pass (Adam, ``act_lr``);
4. the rounding is made hard and written into the layer's float ``weight``
   (which then lies on the calibrated grid: the layer's own weight quantizer
   returns it unchanged), and the quantizer is restored: the model is an
   ordinary calibrated ``QuantizedModel``.
"""

import copy
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.utils import ProgressBar
from torch import Tensor

from ..quantizers import LSQQuantizer
from ..selection import select_patterns
from .adaround import AdaRoundQuantizer, LinearTempDecay
from .calibration import quant_layers, quantizers_off, tensor_forward

LOSSES = ('mse', 'fisher')


class _Stop(Exception):
    """Ends a forward pass once the unit's tensors are recorded."""


def select_units(model: nn.Module, units: Union[str, Sequence[str]]) -> List[str]:
    """The units to reconstruct, in module order, outermost matches only.

    Args:
        model (nn.Module): Calibrated quantized model.
        units (str | Sequence[str]): ``'layers'`` (every quantized layer with a
            weight quantizer: layer-wise AdaRound) or name patterns (fnmatch
            or ``'re:'``), e.g. ``'re:backbone\\.layer\\d\\.\\d'``.

    Returns:
        list[str]: Unit names; each holds at least one weight-quantized layer.
    """
    layers = [
        n for n, m in quant_layers(model).items() if m.weight_quantizer is not None
    ]
    if units == 'layers':
        return layers
    names = [n for n, _ in model.named_modules() if n]
    chosen = set(select_patterns(units, names, 'ptq units', kind='module'))
    order = [n for n in names if n in chosen]
    outer = [n for n in order if not any(n.startswith(o + '.') for o in order)]
    result = [u for u in outer if any(n == u or n.startswith(u + '.') for n in layers)]
    if not result:
        raise ValueError(
            f'ptq units {list(units)} match {outer[:5]}, none of which holds a '
            f'quantized layer with a weight quantizer (those are e.g. {layers[:5]})'
        )
    return result


def _record_unit(
    model: nn.Module,
    unit: nn.Module,
    batches: List[dict],
    quantized: bool,
    fisher: bool = False,
) -> Dict[str, List]:
    """Record the unit's inputs (quantized model) or outputs (float model)."""
    store = dict(args=[], kwargs=[], out=[], grad=[])

    def pre_hook(module, args, kwargs):
        store['args'].append(
            tuple(a.detach().cpu() if isinstance(a, Tensor) else a for a in args)
        )
        store['kwargs'].append(kwargs)
        raise _Stop

    def out_hook(module, args, kwargs, output):
        if not isinstance(output, Tensor):
            raise TypeError(
                f'reconstruction units must return one tensor; {type(module).__name__} '
                f'returned {type(output).__name__}. Choose smaller units'
            )
        store['out'].append(output.detach().cpu())
        if fisher:
            store['live'] = output
            return None
        raise _Stop

    if quantized:
        handle = unit.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        handle = unit.register_forward_hook(out_hook, with_kwargs=True)
    try:
        for data in batches:
            if quantized:
                with torch.no_grad():
                    try:
                        tensor_forward(model, data)
                    except _Stop:
                        pass
            elif not fisher:
                with torch.no_grad(), quantizers_off(model):
                    try:
                        tensor_forward(model, data)
                    except _Stop:
                        pass
            else:
                with torch.enable_grad(), quantizers_off(model):
                    losses = model(data['inputs'], data['data_samples'], mode='loss')
                    loss = sum(v.sum() for k, v in losses.items() if 'loss' in k)
                    (grad,) = torch.autograd.grad(loss, store.pop('live'))
                store['grad'].append(grad.detach().cpu())
    finally:
        handle.remove()
    return store


def reconstruction_loss(pred: Tensor, target: Tensor, grad: Optional[Tensor]) -> Tensor:
    """``sum over non-batch dims of (pred - target)^2 [* grad^2]``, batch mean."""
    err = (pred - target).pow(2)
    if grad is not None:
        err = err * grad.pow(2)
    return err.reshape(err.shape[0], -1).sum(1).mean()


def reconstruct_unit(
    unit: nn.Module,
    inputs: Dict[str, List],
    target: Dict[str, List],
    *,
    iters: int,
    batch_size: int,
    lam: float,
    lr: float,
    warm_up: float,
    learn_act_steps: bool,
    act_lr: float,
    generator: torch.Generator,
    progress: bool,
) -> Dict[str, float]:
    """Optimise the rounding of one unit (see the module docstring).

    Returns:
        dict: ``rec_before`` / ``rec_after``: the reconstruction loss on all
        recorded samples with nearest rounding and with the learned rounding.
    """
    args = [torch.cat(parts) for parts in zip(*inputs['args'])]
    kwargs = inputs['kwargs'][0]
    z = torch.cat(target['out'])
    grad = None
    if target['grad']:
        grad = torch.cat(target['grad'])
        # scale-free weights (mean of grad^2 = 1): the balance with lambda
        # does not depend on the loss's batch reduction
        grad = grad / grad.pow(2).mean().sqrt().clamp_min(1e-30)
    layers = {
        n: m for n, m in quant_layers(unit).items() if m.weight_quantizer is not None
    }
    if '' in layers:  # the unit is one layer
        layers = {'': unit}
    rounders = {}
    for name, layer in layers.items():
        rounders[name] = AdaRoundQuantizer(layer.weight_quantizer, layer.weight)
    steps = [
        m.step
        for m in unit.modules()
        if isinstance(m, LSQQuantizer)
        and learn_act_steps
        and not any(m is layer.weight_quantizer for layer in layers.values())
    ]
    originals = {n: layer.weight_quantizer for n, layer in layers.items()}

    def full_loss():
        with torch.no_grad():
            pred = torch.cat(
                [
                    unit(*[a[i : i + 256] for a in args], **kwargs)
                    for i in range(0, z.shape[0], 256)
                ]
            )
            return reconstruction_loss(pred, z, grad).item()

    before = full_loss()
    for name, layer in layers.items():
        layer.weight_quantizer = rounders[name]
    groups = [dict(params=[r.v for r in rounders.values()], lr=lr)]
    if steps:
        groups.append(dict(params=steps, lr=act_lr))
    optimizer = torch.optim.Adam(groups)
    decay = LinearTempDecay(iters, warm_up=warm_up)
    bar = ProgressBar(iters) if progress else None
    try:
        for t in range(iters):
            idx = torch.randint(
                z.shape[0], (min(batch_size, z.shape[0]),), generator=generator
            )
            pred = unit(*[a[idx] for a in args], **kwargs)
            loss = reconstruction_loss(
                pred, z[idx], None if grad is None else grad[idx]
            )
            if not decay.in_warm_up(t):
                beta = decay(t)
                loss = loss + lam * sum(r.regularizer(beta) for r in rounders.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if bar is not None:
                bar.update()
        for rounder in rounders.values():
            rounder.hard = True
        after = full_loss()
        with torch.no_grad():
            for name, layer in layers.items():
                layer.weight.data.copy_(rounders[name](layer.weight))
    finally:
        for name, layer in layers.items():
            layer.weight_quantizer = originals[name]
    if bar is not None:
        print()
    return dict(rec_before=before, rec_after=after)


def reconstruct(
    model: nn.Module,
    batches: List[dict],
    units: Union[str, Sequence[str]] = 'layers',
    iters: int = 20000,
    batch_size: int = 32,
    loss: str = 'mse',
    lam: float = 0.01,
    lr: float = 1e-3,
    warm_up: float = 0.2,
    learn_act_steps: bool = False,
    act_lr: float = 4e-5,
    seed: int = 0,
    done: Sequence[str] = (),
    on_unit_done: Optional[Callable[[str, dict], None]] = None,
    progress: bool = True,
) -> Dict[str, dict]:
    """Reconstruct the weight rounding of every unit (module docstring).

    Args:
        model (nn.Module): Calibrated quantized model (:func:`calibrate_ranges`).
        batches (list[dict]): Preprocessed calibration batches.
        units (str | Sequence[str]): ``'layers'`` or name patterns
            (:func:`select_units`). Defaults to ``'layers'``.
        iters (int): Adam iterations per unit. Defaults to 20000 (BRECQ).
        batch_size (int): Samples per iteration. Defaults to 32.
        loss (str): ``'mse'`` or ``'fisher'``. Defaults to ``'mse'``.
        lam (float): Weight of the rounding regulariser. Defaults to 0.01.
        lr (float): Adam lr of ``V``. Defaults to 1e-3.
        warm_up (float): Fraction of iterations without the regulariser.
            Defaults to 0.2.
        learn_act_steps (bool): Also learn the unit's LSQ activation steps.
            Defaults to False.
        act_lr (float): Their Adam lr. Defaults to 4e-5.
        seed (int): Seed of the mini-batch sampling. Defaults to 0.
        done (Sequence[str]): Units already reconstructed (resume): skipped.
        on_unit_done (callable, optional): Called with ``(unit, stats)`` after
            each unit (e.g. to save a resumable state).
        progress (bool): Progress bars. Defaults to True.

    Returns:
        dict: ``{unit: dict(rec_before=..., rec_after=...)}``.
    """
    if loss not in LOSSES:
        raise ValueError(f'ptq loss must be one of {LOSSES}, got {loss!r}')
    for key, value in dict(iters=iters, batch_size=batch_size).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'ptq {key} must be an int >= 1, got {value!r}')
    model.eval()
    names = select_units(model, units)
    modules = dict(model.named_modules())
    # the float targets come from a copy: reconstructed units write their
    # rounded weights into the model
    float_model = copy.deepcopy(model)
    float_modules = dict(float_model.named_modules())
    logger = MMLogger.get_current_instance()
    generator = torch.Generator().manual_seed(seed)
    results = {}
    for index, name in enumerate(names):
        if name in done:
            continue
        unit = modules[name]
        target = _record_unit(
            float_model,
            float_modules[name],
            batches,
            quantized=False,
            fisher=loss == 'fisher',
        )
        inputs = _record_unit(model, unit, batches, quantized=True)
        if not target['out'] or not inputs['args']:
            raise RuntimeError(
                f"ptq unit {name} was not run by the model's tensor-mode forward "
                f'on the calibration batches; choose units on that path'
            )
        stats = reconstruct_unit(
            unit,
            inputs,
            target,
            iters=iters,
            batch_size=batch_size,
            lam=lam,
            lr=lr,
            warm_up=warm_up,
            learn_act_steps=learn_act_steps,
            act_lr=act_lr,
            generator=generator,
            progress=progress,
        )
        results[name] = stats
        logger.info(
            f'PTQ unit {index + 1}/{len(names)} {name}: reconstruction loss '
            f'{stats["rec_before"]:.4g} (nearest) -> {stats["rec_after"]:.4g}'
        )
        if on_unit_done is not None:
            on_unit_done(name, stats)
    return results
