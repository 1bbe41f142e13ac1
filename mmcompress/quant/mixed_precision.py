"""Mixed precision by budget: per-layer sensitivity, per-layer latency and a
bit-width allocation that meets a latency budget, written as the
``layer_overrides`` of a QAT / PTQ config.

* :func:`output_sensitivity`: the sensitivity of the model output to
  quantizing one layer (weights per output channel and input per tensor,
  min/max uniform grids) while every other layer stays float, measured as the
  KL divergence of the softmax outputs from the float model's, on calibration
  batches (the layer-wise sensitivity of ZeroQ, Cai et al., CVPR 2020, Sec. 3.2,
  with real data instead of distilled data);
* :func:`allocate_bits`: the option per layer (e.g. ``8``, ``4`` or ``None``
  for float) that minimises the summed sensitivity under a latency budget,
  exactly (a multiple-choice knapsack solved by dynamic programming on the
  latencies rounded to ``resolution``); a budget that no allocation meets is
  an error naming the smallest feasible budget;
* :func:`layer_overrides`: the allocation as ``quant.layer_overrides``.

* :func:`layer_latency`: each layer's latency measured in onnxruntime on
  this machine, alone, at the input shape it sees in the model: the float
  layer and its 8-bit integer graph (``optimize_for_onnxruntime``).
  onnxruntime's CPU provider has no 4-bit kernels, so a 4-bit layer runs the
  8-bit kernel there and gets the 8-bit latency.
"""

import math
from typing import Dict, Hashable, Iterable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def _fake_quant(x: Tensor, bits: int, axis: Optional[int] = None) -> Tensor:
    """Symmetric min/max uniform quantization (per ``axis`` slice if given)."""
    levels = 2 ** (bits - 1) - 1
    if axis is None:
        peak = x.abs().max()
    else:
        dims = [d for d in range(x.dim()) if d != axis]
        peak = x.abs().amax(dim=dims, keepdim=True)
    scale = peak.clamp(min=1e-12) / levels
    return (x / scale).round().clamp(-levels - 1, levels) * scale


def output_sensitivity(
    model: nn.Module,
    batches: Iterable[Tensor],
    layers: Sequence[str],
    options: Sequence[int] = (8, 4),
) -> Dict[str, Dict[int, float]]:
    """KL divergence of the model's softmax output from the float output
    when one layer is quantized to each option's bit width.

    Args:
        model (nn.Module): A float model mapping a tensor to logits (last
            dimension the classes; dense outputs are flattened per position)
            or to a tuple of such tensors (the KL divergences of all outputs
            are summed, e.g. a detector's class and box maps of every level).
        batches (Iterable[Tensor]): Calibration inputs.
        layers (Sequence[str]): Names of conv / linear modules to measure.
        options (Sequence[int]): Bit widths. Defaults to (8, 4).

    Returns:
        dict: ``{layer: {bits: mean KL}}``.
    """
    batches = list(batches)
    model = model.eval()
    with torch.no_grad():
        reference = [_log_probs(model(b)) for b in batches]
    result = {}
    for name in layers:
        module = model.get_submodule(name)
        original = module.weight.data.clone()
        result[name] = {}
        for bits in options:
            handle = module.register_forward_pre_hook(
                lambda m, args, bits=bits: (_fake_quant(args[0], bits),) + args[1:]
            )
            module.weight.data = _fake_quant(original, bits, axis=0)
            try:
                with torch.no_grad():
                    total = sum(
                        _kl(_log_probs(model(b)), ref)
                        for b, ref in zip(batches, reference)
                    )
            finally:
                handle.remove()
                module.weight.data = original
            result[name][bits] = total / len(batches)
    return result


def _log_probs(output) -> List[Tensor]:
    """Log-softmax over the class dimension of every output tensor (dense
    outputs: one row per position; several outputs, e.g. a detector's
    per-level maps: one table each)."""
    outputs = output if isinstance(output, (tuple, list)) else [output]
    result = []
    for out in outputs:
        if out.dim() > 2:  # N, C, ... -> (N * positions, C)
            out = out.flatten(2).transpose(1, 2).flatten(0, 1)
        result.append(F.log_softmax(out, -1))
    return result


def _kl(outputs: List[Tensor], reference: List[Tensor]) -> float:
    """Summed KL divergence of each output from its reference (batch mean)."""
    return sum(
        float(F.kl_div(o, r, log_target=True, reduction='batchmean'))
        for o, r in zip(outputs, reference)
    )


def allocate_bits(
    sensitivity: Dict[str, Dict[Hashable, float]],
    latency: Dict[str, Dict[Hashable, float]],
    budget: float,
    resolution: Optional[float] = None,
    quantity: str = 'latency',
    unit: str = 'ms',
) -> Dict[str, Hashable]:
    """The option per layer with the least summed sensitivity whose summed
    latency (or another additive cost, e.g. :func:`layer_bops`) is within
    ``budget``.

    Args:
        sensitivity (dict): ``{layer: {option: cost}}`` (e.g. from
            :func:`output_sensitivity`; float, ``None``, costs 0).
        latency (dict): ``{layer: {option: milliseconds}}``, the same layers
            and options.
        budget (float): The latency budget (milliseconds).
        resolution (float, optional): Latency grid of the dynamic program.
            Defaults to ``budget / 2000``. Latencies are rounded up to it, so
            the allocation never exceeds the budget.
        quantity (str): What ``latency`` holds, for messages. Defaults to
            ``'latency'``.
        unit (str): Its unit, for messages. Defaults to ``'ms'``.

    Returns:
        dict: ``{layer: option}``.

    Raises:
        ValueError: Layers or options differ between the two tables, or the
            budget is below the fastest allocation (the message gives it).
    """
    layers = sorted(latency)
    if sorted(sensitivity) != layers or any(
        set(sensitivity[n]) != set(latency[n]) for n in layers
    ):
        raise ValueError(
            'allocate_bits: sensitivity and latency must list the same layers '
            f'and options, got {_options(sensitivity)} and {_options(latency)}'
        )
    fastest = sum(min(latency[n].values()) for n in layers)
    if fastest > budget:
        picks = ', '.join(f'{n}={min(latency[n], key=latency[n].get)}' for n in layers)
        least = 'fastest' if quantity == 'latency' else 'cheapest'
        raise ValueError(
            f'no allocation meets the {quantity} budget {budget:.4g} {unit}: the '
            f'{least} ({picks}) takes {fastest:.4g} {unit}; raise the budget to '
            f'at least {fastest:.4g} {unit}'
        )
    step = resolution or budget / 2000
    units = int(budget / step + 1e-9)
    best: List[Optional[tuple]] = [None] * (units + 1)  # used units -> (cost, picks)
    best[0] = (0.0, ())
    for name in layers:
        nxt: List[Optional[tuple]] = [None] * (units + 1)
        for used, state in enumerate(best):
            if state is None:
                continue
            for option, ms in latency[name].items():
                total = used + math.ceil(ms / step - 1e-6)  # rounded up
                if total > units:
                    continue
                cost = state[0] + sensitivity[name][option]
                if nxt[total] is None or cost < nxt[total][0]:
                    nxt[total] = (cost, state[1] + (option,))
        best = nxt
    feasible = [s for s in best if s is not None]
    if not feasible:
        raise ValueError(
            f'no allocation meets the {quantity} budget {budget:.4g} {unit} at '
            f'the resolution {step:.3g} {unit}; pass a finer resolution'
        )
    return dict(zip(layers, min(feasible, key=lambda s: s[0])[1]))


def _options(table: dict) -> dict:
    return {n: sorted(map(str, opts)) for n, opts in table.items()}


def layer_overrides(
    allocation: Dict[str, Optional[int]], default_bits: int = 8
) -> Dict[str, Optional[dict]]:
    """The allocation as ``QuantizedModel``'s ``quant.layer_overrides``.

    Args:
        allocation (dict): ``{layer: bits or None}`` (None: float).
        default_bits (int): The config's own bit width; layers at it need no
            override. Defaults to 8.

    Returns:
        dict: ``{layer: dict(w=dict(bits=b), a=dict(bits=b))}``, or
        ``dict(w=None, a=None)`` for a float layer (layer names are
        ``fnmatch`` patterns matching themselves).
    """
    overrides = {}
    for name, bits in sorted(allocation.items()):
        if bits is None:
            overrides[name] = dict(w=None, a=None)
        elif bits != default_bits:
            overrides[name] = dict(w=dict(bits=bits), a=dict(bits=bits))
    return overrides


def layer_latency(
    model: nn.Module,
    example: Tensor,
    layers: Sequence[str],
    options: Sequence[Optional[int]] = (None, 8, 4),
    runs: int = 20,
    threads: int = 1,
) -> Dict[str, Dict[Optional[int], float]]:
    """Per-layer onnxruntime latency (ms, median of ``runs`` rounds in which
    the float and the int8 layer run alternately) of each option.

    Args:
        model (nn.Module): The float model.
        example (Tensor): An input of the deployment shape (batch 1).
        layers (Sequence[str]): Conv / linear module names.
        options (Sequence): ``None`` (float) and bit widths. Defaults to
            ``(None, 8, 4)``.
        runs (int): Timed runs per layer and option. Defaults to 20.
        threads (int): onnxruntime intra-op threads. Defaults to 1.

    Returns:
        dict: ``{layer: {option: ms}}``.
    """
    import copy

    from .export import export_onnx, onnxruntime_session, optimize_for_onnxruntime
    from .graph_latency import interleaved_session_ms
    from .transform import quantize_model

    inputs = {}
    handles = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda m, args, n=n: inputs.setdefault(n, args[0].detach())
        )
        for n in layers
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for name in layers:
        layer, x = model.get_submodule(name), inputs[name]
        float_session = onnxruntime_session(
            export_onnx(copy.deepcopy(layer), x, quantized=False), threads
        )
        quantized = quantize_model(
            nn.Sequential(copy.deepcopy(layer)),
            w=dict(type='LSQQuantizer', bits=8, signed=True),
            a=dict(type='LSQQuantizer', bits=8),
            keep_first_float=False,
            keep_output_float=False,
        )
        with torch.no_grad():
            quantized.train()(x)
        blob = optimize_for_onnxruntime(export_onnx(quantized.eval(), x), [x])
        ms = interleaved_session_ms(
            dict(float=float_session, int8=onnxruntime_session(blob, threads)),
            {'input': x.numpy()},
            runs,
            warmup=2,
        )
        float_ms, int8_ms = ms['float'], ms['int8']
        result[name] = {o: float_ms if o is None else int8_ms for o in options}
    return result


def quantized_layer_names(model: nn.Module, quant: dict) -> List[str]:
    """Names of the layers that ``QuantizedModel`` with ``quant`` quantizes.

    Args:
        model (nn.Module): The float model (left unchanged).
        quant (dict): The ``quant`` options of a ``QuantizedModel`` config.

    Returns:
        list[str]: Module names, in module order.
    """
    import copy

    from .handlers import quant_layer_types
    from .transform import quantize_model

    quantized = quantize_model(copy.deepcopy(model), **quant)
    types = quant_layer_types()
    return [n for n, m in quantized.named_modules() if isinstance(m, types)]


def layer_bops(
    model: nn.Module,
    example: Tensor,
    layers: Sequence[str],
    options: Sequence[Optional[int]] = (None, 8, 4),
) -> Dict[str, Dict[Optional[int], float]]:
    """Per-layer bit operations (GBOPs) of each option: multiply-accumulates
    at the input ``example`` times weight bits times input bits (float: 32 x
    32), the cost measure of HAWQ-V3 (Yao et al., ICML 2021, Sec. 3.4).

    Args:
        model (nn.Module): The model.
        example (Tensor): An input (its batch size counts).
        layers (Sequence[str]): Conv / linear module names.
        options (Sequence): ``None`` (float) and bit widths.

    Returns:
        dict: ``{layer: {option: GBOPs}}``.
    """
    macs = {}

    def count(module, args, output, name):
        weight = module.weight
        if isinstance(module, nn.Linear):
            per_output = weight.shape[1]
        else:  # conv: in/groups x kernel per output value; deconv: per input
            per_output = weight[0].numel()
            if isinstance(module, nn.ConvTranspose2d):
                output = args[0]
        macs[name] = macs.get(name, 0) + output.numel() * per_output

    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda m, a, o, n=n: count(m, a, o, n)
        )
        for n in layers
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return {
        n: {o: macs[n] * (32 if o is None else o) ** 2 / 1e9 for o in options}
        for n in layers
    }
