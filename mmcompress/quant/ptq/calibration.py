"""Post-training range calibration of a quantized model (layers already swapped).

:func:`calibrate_ranges` sets every quantizer of a model built by
``QuantizedModel`` / :func:`~mmcompress.quant.quantize_` from observers instead
of training: weight quantizers from their weights, activation quantizers (layer
inputs and ``output_quantizers``) from the tensors they see while the *float*
model (every quantizer disabled) runs on calibration batches. The result is the
state a QAT checkpoint holds (``step``, ``signed``, ``initialized = 1``), so it
is saved, loaded by stock ``tools/test.py`` and exported as a QAT model is.

Supported quantizers: :class:`~mmcompress.quant.LSQQuantizer` (the step is set)
and :class:`~mmcompress.quant.UniformSTEQuantizer` with ``observer='ema'`` (its
running range is set to ``[qmin, qmax] * step``); others raise ``TypeError``.
"""

from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.utils import ProgressBar
from torch import Tensor

from ..layers import QuantLayerMixin
from ..quantizers import BaseQuantizer, LSQQuantizer, UniformSTEQuantizer
from .observers import BaseObserver, build_observer


def quant_layers(model: nn.Module) -> Dict[str, nn.Module]:
    """The quantized layers of ``model`` by name, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLayerMixin)}


def activation_quantizers(model: nn.Module) -> Dict[str, BaseQuantizer]:
    """Layer-input (``act_quantizer``) and ``output_quantizer`` s by name."""
    found = {}
    for name, module in model.named_modules():
        leaf = name.rsplit('.', 1)[-1]
        if leaf in ('act_quantizer', 'output_quantizer') and isinstance(
            module, BaseQuantizer
        ):
            found[name] = module
    return found


def check_supported(name: str, quantizer: nn.Module) -> None:
    """Refuse quantizers whose range calibration cannot set."""
    if isinstance(quantizer, LSQQuantizer):
        return
    if isinstance(quantizer, UniformSTEQuantizer) and quantizer.observer == 'ema':
        return
    raise TypeError(
        f'post-training calibration sets LSQQuantizer steps and '
        f"UniformSTEQuantizer(observer='ema') ranges; {name} is "
        f'{type(quantizer).__name__}'
        + (
            f'(observer={quantizer.observer!r})'
            if hasattr(quantizer, 'observer')
            else ''
        )
        + ". Use w/a=dict(type='LSQQuantizer', ...) in the config's quant section"
    )


def set_scale(quantizer: BaseQuantizer, scale: Tensor, signed: bool) -> None:
    """Write a zero-point-free grid ``[qmin, qmax] * scale`` into a quantizer.

    Args:
        quantizer (BaseQuantizer): LSQ, or uniform STE with the EMA observer.
        scale (Tensor): ``(C,)`` or ``(1,)`` steps.
        signed (bool): Whether the grid is signed.
    """
    quantizer.signed.fill_(int(signed))
    expected = quantizer.param_shape[0]
    if quantizer.num_groups and scale.numel() == quantizer.num_channels:
        grouped = scale.reshape(quantizer.num_groups, -1)
        if not bool((grouped == grouped[:, :1]).all()):
            raise ValueError(
                f'{type(quantizer).__name__} has num_groups='
                f'{quantizer.num_groups}: its observer must give one scale per '
                "group (granularity='group' with the same num_groups)"
            )
        scale = grouped[:, 0]
    if scale.numel() != expected:
        if scale.numel() == 1:
            scale = scale.expand(expected)
        else:
            raise ValueError(
                f'{type(quantizer).__name__}: the observer gave {scale.numel()} '
                f'scales, the quantizer holds {expected} (per_channel='
                f'{quantizer.per_channel}); a per-channel or group observer '
                'needs a per_channel=True quantizer'
            )
    device = quantizer.initialized.device
    scale = scale.reshape(expected).to(device)
    if isinstance(quantizer, LSQQuantizer):
        quantizer.step.data.copy_(scale)
    else:
        quantizer.running_min.copy_(scale * (quantizer.qmin if signed else 0))
        quantizer.running_max.copy_(scale * quantizer.qmax)
    quantizer.initialized.fill_(1)


def observer_for(cfg: dict, quantizer: BaseQuantizer) -> BaseObserver:
    """Build ``cfg`` for ``quantizer``: per tensor, channel or group (with its
    ``num_groups``) as the quantizer is, on its channel axis, unless ``cfg``
    sets ``granularity``."""
    defaults = dict(channel_axis=quantizer.channel_axis)
    if quantizer.num_groups:
        defaults.update(granularity='group', num_groups=quantizer.num_groups)
    else:
        defaults.update(granularity='channel' if quantizer.per_channel else 'tensor')
    return build_observer(cfg, **defaults)


def grid_of(quantizer: BaseQuantizer, signed: bool) -> Tuple[int, int]:
    """``(qmin, qmax)`` of ``quantizer`` with the given sign."""
    old = quantizer.signed.item()
    quantizer.signed.fill_(int(signed))
    grid = quantizer.qmin, quantizer.qmax
    quantizer.signed.fill_(old)
    return grid


def calibrate_weights(model: nn.Module, observer: dict) -> int:
    """Set every weight quantizer's step from its weight.

    Args:
        model (nn.Module): The quantized model.
        observer (dict): Observer config.

    Returns:
        int: Number of weight quantizers set.
    """
    count = 0
    for name, layer in quant_layers(model).items():
        quantizer = layer.weight_quantizer
        if quantizer is None:
            continue
        check_supported(f'{name}.weight_quantizer', quantizer)
        obs = observer_for(observer, quantizer)
        obs.update(layer.weight)
        signed = obs.has_negative if quantizer.auto_signed else quantizer.is_signed
        set_scale(quantizer, obs.compute_scale(*grid_of(quantizer, signed)), signed)
        count += 1
    return count


def model_batches(
    model: nn.Module, dataloader: Iterable, num_images: int
) -> Iterator[Tuple[dict, int]]:
    """Preprocessed batches of ``dataloader`` until ``num_images`` are seen.

    Args:
        model (nn.Module): Its ``data_preprocessor`` is applied.
        dataloader (Iterable): Any OpenMMLab dataloader (dicts of
            ``inputs`` / ``data_samples``).
        num_images (int): Images to yield (the last batch is cut).

    Yields:
        tuple[dict, int]: ``(data, n)``: the preprocessed batch
        (``inputs``, ``data_samples``) and its number of images.
    """
    if (
        isinstance(num_images, bool)
        or not isinstance(num_images, int)
        or num_images < 1
    ):
        raise ValueError(
            f'the number of calibration images must be an int >= 1, got {num_images!r}'
        )
    seen = 0
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        inputs = data['inputs']
        count = inputs.shape[0] if isinstance(inputs, Tensor) else len(inputs)
        if count == 0:
            continue
        take = min(count, num_images - seen)
        if take < count:
            data = dict(data)
            data['inputs'] = inputs[:take]
            if data.get('data_samples') is not None:
                data['data_samples'] = data['data_samples'][:take]
        yield data, take
        seen += take
        if seen >= num_images:
            return
    if seen == 0:
        raise ValueError(
            'the calibration dataloader yielded no images (an empty dataset, or '
            'every batch empty); check its dataset, ann_file and subset settings'
        )


def cache_batches(
    model: nn.Module, dataloader: Iterable, num_images: int, progress: bool = True
) -> List[dict]:
    """Run :func:`model_batches` once and keep the batches (on CPU)."""
    batches = []
    bar = ProgressBar(num_images) if progress else None
    for data, count in model_batches(model, dataloader, num_images):
        batches.append(data)
        if bar is not None:
            bar.update(count)
    if bar is not None:
        print()
    return batches


class quantizers_off:
    """Context: every quantizer of ``model`` is the identity, and layers run
    their quantized path (``calibrating``), so input hooks fire."""

    def __init__(self, model: nn.Module) -> None:
        self.quantizers = [m for m in model.modules() if isinstance(m, BaseQuantizer)]

    def __enter__(self):
        self.saved = [(q.enabled, q.calibrating) for q in self.quantizers]
        for q in self.quantizers:
            q.enabled, q.calibrating = False, True
        return self

    def __exit__(self, *exc):
        for q, (enabled, calibrating) in zip(self.quantizers, self.saved):
            q.enabled, q.calibrating = enabled, calibrating


def tensor_forward(model: nn.Module, data: dict):
    """``model(inputs, data_samples, mode='tensor')`` on a preprocessed batch."""
    return model(data['inputs'], data.get('data_samples'), mode='tensor')


def calibrate_activations(
    model: nn.Module, batches: List[dict], observer: dict, progress: bool = True
) -> int:
    """Set activation quantizers from the float model's tensors.

    Args:
        model (nn.Module): The quantized model (eval mode).
        batches (list[dict]): Preprocessed calibration batches.
        observer (dict): Observer config.
        progress (bool): Show a progress bar. Defaults to True.

    Returns:
        int: Number of activation quantizers set.
    """
    quantizers = activation_quantizers(model)
    observers, handles = {}, []
    for name, quantizer in quantizers.items():
        check_supported(name, quantizer)
        observers[name] = observer_for(observer, quantizer)

        def hook(module, args, obs=observers[name]):
            obs.update(args[0])

        handles.append(quantizer.register_forward_pre_hook(hook))
    bar = ProgressBar(len(batches)) if progress else None
    try:
        with torch.no_grad(), quantizers_off(model):
            for data in batches:
                tensor_forward(model, data)
                if bar is not None:
                    bar.update()
    finally:
        for handle in handles:
            handle.remove()
    if bar is not None:
        print()
    for name, quantizer in quantizers.items():
        obs = observers[name]
        if not obs.num_batches:
            raise RuntimeError(
                f'{name} saw no tensor in {len(batches)} calibration batches '
                "(the layer is not on the model's tensor-mode path); keep it "
                'float with quant.exclude'
            )
        signed = obs.has_negative if quantizer.auto_signed else quantizer.is_signed
        set_scale(quantizer, obs.compute_scale(*grid_of(quantizer, signed)), signed)
    return len(quantizers)


def calibrate_ranges(
    model: nn.Module,
    batches: List[dict],
    weight_observer: Optional[dict] = None,
    act_observer: Optional[dict] = None,
    progress: bool = True,
) -> Dict[str, int]:
    """Calibrate every quantizer of ``model`` (weights, then activations).

    Args:
        model (nn.Module): Quantized model; put in eval mode.
        batches (list[dict]): Preprocessed calibration batches
            (:func:`cache_batches`).
        weight_observer (dict, optional): Defaults to ``MinMaxObserver``.
        act_observer (dict, optional): Defaults to ``MinMaxObserver``.
        progress (bool): Progress bar. Defaults to True.

    Returns:
        dict: ``{'weights': n, 'activations': m}`` quantizers set.
    """
    if not batches:
        raise ValueError(
            'calibration needs at least one batch; got 0 (num_images >= 1 and '
            'a dataloader that yields images)'
        )
    model.eval()
    weights = calibrate_weights(model, weight_observer or dict(type='MinMaxObserver'))
    acts = calibrate_activations(
        model, batches, act_observer or dict(type='MinMaxObserver'), progress
    )
    MMLogger.get_current_instance().info(
        f'PTQ calibration: {weights} weight and {acts} activation quantizers set '
        f'from {sum(batch_size(b) for b in batches)} images'
    )
    return dict(weights=weights, activations=acts)


def batch_size(data: dict) -> int:
    """Images in a preprocessed batch."""
    inputs = data['inputs']
    return inputs.shape[0] if isinstance(inputs, Tensor) else len(inputs)
