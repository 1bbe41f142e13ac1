"""Deploy folding of UN (and TokenBN): each eval-mode norm is the per-channel
affine ``y = s * x + c``; folded into the Linear ``L(W, b)`` that consumes its
output, ``L(y) = (W diag(s)) x + (W c + b)`` and the norm becomes ``Identity``.

Which Linear consumes a norm's output is found without FX: one probe forward
records, by tensor identity, every torch function applied to each norm's output
(a ``TorchFunctionMode``) and the input of every ``nn.Linear``. A norm folds
when its output is used exactly once, by one ``nn.Linear`` that is itself
called once. Token selection by indexing that keeps the channel dimension
(``x[:, 0]``: the class token of a ViT) passes the affine through, so the
final norm of a ViT folds into the head's Linear.
"""

from typing import Dict, List, Optional, Tuple

import torch
from mmcv.cnn.bricks.wrappers import Linear as MMCVLinear
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .token_bn import TokenBN
from .un import UN

FOLDABLE = (UN, TokenBN)
# Linear types a norm folds into: exactly these (a quantized Linear subclass
# would change its weight grid, so it is not one).
LINEARS = (nn.Linear, MMCVLinear)
# Tensor methods that only read metadata: not a use of the values.
METADATA = {'size', 'dim', 'numel', 'is_contiguous', 'stride', 'element_size'}
ON_UNFOLDABLE = ('error', 'affine')


class ChannelAffine(nn.Module):
    """``y = x * scale + shift`` on the last dimension (an unfoldable norm's
    deploy form: two element-wise ops, no reduction).

    Args:
        scale (Tensor): ``(C,)``.
        shift (Tensor): ``(C,)``.
    """

    def __init__(self, scale: Tensor, shift: Tensor) -> None:
        super().__init__()
        self.register_buffer('scale', scale.detach().clone())
        self.register_buffer('shift', shift.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


def norm_affine(norm: nn.Module) -> Tuple[Tensor, Tensor]:
    """The eval-mode ``(scale, shift)`` of a UN or TokenBN layer.

    Args:
        norm (nn.Module): A :class:`UN` or :class:`TokenBN`.

    Returns:
        tuple[Tensor, Tensor]: ``y = x * scale + shift``.
    """
    std = (norm.running_var + norm.eps).sqrt()
    if isinstance(norm, UN):
        return norm.weight / std, norm.bias.clone()
    weight = norm.weight if norm.affine else torch.ones_like(std)
    bias = norm.bias if norm.affine else torch.zeros_like(std)
    return weight / std, bias - norm.running_mean * weight / std


def _keeps_channels(func, args) -> bool:
    """An index that selects tokens and leaves the last dimension whole."""
    if getattr(func, '__name__', '') != '__getitem__' or len(args) != 2:
        return False
    x, index = args
    index = index if isinstance(index, tuple) else (index,)
    simple = all(isinstance(i, (int, slice)) for i in index)
    return simple and len(index) < x.dim()


class _UseRecorder(TorchFunctionMode):
    """Record each use of the watched tensors (``id -> norm name``)."""

    def __init__(self, watched: Dict[int, Tuple[str, Tensor]]) -> None:
        super().__init__()
        self.watched = watched
        self.uses: Dict[str, List[str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, '__name__', str(func))
        if name in METADATA or name == '__get__':
            return out
        flat = list(args) + list(kwargs.values())
        for arg in flat:
            if isinstance(arg, Tensor) and id(arg) in self.watched:
                norm, _ = self.watched[id(arg)]
                if _keeps_channels(func, args) and isinstance(out, Tensor):
                    self.watched[id(out)] = (norm, out)
                else:
                    self.uses.setdefault(norm, []).append(name)
        return out


def _probe(model: nn.Module, norms: Dict[str, nn.Module], inputs: tuple) -> tuple:
    """Run one forward; return the uses of each norm output and each Linear's
    inputs (by norm name) and call counts."""
    watched, calls, fed = {}, {}, {}
    handles = []
    for name, norm in norms.items():

        def keep(module, args, output, name=name):
            calls[name] = calls.get(name, 0) + 1
            watched[id(output)] = (name, output)

        handles.append(norm.register_forward_hook(keep))
    linears = {n: m for n, m in model.named_modules() if type(m) in LINEARS}
    for name, linear in linears.items():

        def see(module, args, name=name):
            calls[name] = calls.get(name, 0) + 1
            if args and id(args[0]) in watched:
                fed.setdefault(watched[id(args[0])][0], []).append(name)

        handles.append(linear.register_forward_pre_hook(see))
    recorder = _UseRecorder(watched)
    try:
        with torch.no_grad(), recorder:
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return recorder.uses, fed, calls


def _fold_into(linear: nn.Linear, scale: Tensor, shift: Tensor) -> None:
    with torch.no_grad():
        extra = linear.weight @ shift
        linear.weight.mul_(scale)
        if linear.bias is None:
            linear.bias = nn.Parameter(extra)
        else:
            linear.bias.add_(extra)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition('.')
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def fuse_un(
    model: nn.Module,
    example_inputs: tuple,
    on_unfoldable: str = 'error',
) -> Dict[str, Optional[str]]:
    """Fold every UN / TokenBN of ``model`` into the Linear consuming it.

    The model is switched to eval mode and changed in place; its outputs stay
    the same up to float rounding.

    Args:
        model (nn.Module): Any model (an OpenMMLab model is called as
            ``model(*example_inputs)``, i.e. ``mode='tensor'``).
        example_inputs (tuple): Arguments of one probe forward.
        on_unfoldable (str): A norm whose output is not used by exactly one
            ``nn.Linear``: ``'error'`` raises, ``'affine'`` replaces it by a
            :class:`ChannelAffine`. Defaults to ``'error'``.

    Returns:
        dict: ``{norm name: Linear name}`` (None where an affine was kept).
    """
    if on_unfoldable not in ON_UNFOLDABLE:
        raise ValueError(
            f'fuse_un: on_unfoldable must be one of {ON_UNFOLDABLE}, '
            f'got {on_unfoldable!r}'
        )
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    model.eval()
    norms = {n: m for n, m in model.named_modules() if isinstance(m, FOLDABLE)}
    if not norms:
        raise ValueError(
            f'fuse_un: {type(model).__name__} has no UN or TokenBN layer to fold'
        )
    uses, fed, calls = _probe(model, norms, example_inputs)
    plan, problems = {}, []
    for name in norms:
        targets, used = fed.get(name, []), uses.get(name, [])
        ok = (
            calls.get(name, 0) == 1
            and len(targets) == 1
            and used == ['linear']
            and calls[targets[0]] == 1
        )
        if ok:
            plan[name] = targets[0]
            continue
        why = (
            f'called {calls.get(name, 0)} times in the probe forward'
            if calls.get(name, 0) != 1
            else f'its output is used by {used or "nothing"} (nn.Linear inputs: '
            f'{targets or "none"}), not by exactly one nn.Linear called once'
        )
        problems.append(f'{name} ({type(norms[name]).__name__}): {why}')
        plan[name] = None
    if problems and on_unfoldable == 'error':
        raise ValueError(
            'fuse_un: cannot fold ' + '; '.join(problems) + '. Pass on_unfoldable='
            "'affine' to keep these as a per-channel affine (Mul + Add)"
        )
    for name, target in plan.items():
        scale, shift = norm_affine(norms[name])
        if target is None:
            _set(model, name, ChannelAffine(scale, shift))
        else:
            _fold_into(model.get_submodule(target), scale.detach(), shift.detach())
            _set(model, name, nn.Identity())
    return plan
