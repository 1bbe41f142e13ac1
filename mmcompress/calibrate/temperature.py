"""Post-hoc temperature scaling: fitting and applying at test time.

``fit_temperature`` minimises the NLL of ``softmax(logits / T)`` over ``T``
with LBFGS (Guo et al. 2017), within :data:`TEMPERATURE_BOUNDS` and never
above the NLL of ``T = 1``. ``TemperatureScalingHook`` applies a fitted ``T``
during validation/testing by dividing the output of one sub-module (the
classification head by default) by ``T``; it changes no weight, so the stock
``tools/test.py`` evaluates a plain checkpoint with the hook in the config::

    custom_hooks = [dict(type='TemperatureScalingHook', temperature=1.7)]

``tools/calibrate_temperature.py`` fits ``T`` and writes such a config.
"""

import difflib
import warnings
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmcompress.registry import HOOKS
from mmcompress.utils.checks import check_number

PHASES = ('val', 'test')

#: Range the fitted temperature is clamped to. Fitted values of real models
#: lie around 0.5-5; an optimum outside this range means the fit split is
#: degenerate (too small, or classified perfectly: then the NLL keeps falling
#: as ``T -> 0``).
TEMPERATURE_BOUNDS = (0.05, 20.0)

#: Below this many held-out samples ``fit_temperature`` warns that ``T`` is
#: unreliable (Guo et al. 2017 fit on 5000 images or more).
MIN_FIT_SAMPLES = 100


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits / temperature, labels))


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    initial_temperature: float = 1.0,
    max_iter: int = 100,
    bounds: Tuple[float, float] = TEMPERATURE_BOUNDS,
) -> float:
    """Fit the temperature minimising the NLL of ``softmax(logits / T)``.

    The optimisation runs over ``log T`` (so ``T`` stays positive) with LBFGS
    and a strong-Wolfe line search, in float64. Guards, each with a warning
    that names the split size:

    - fewer than :data:`MIN_FIT_SAMPLES` samples: ``T`` is unreliable;
    - every sample classified correctly: the NLL falls as ``T -> 0`` and has
      no minimum, ``T = 1`` (no scaling) is returned;
    - the true-class logit not above the mean logit on average: the NLL falls
      as ``T -> inf``, the upper bound is returned;
    - an optimum outside ``bounds``: ``T`` is clamped to the better bound (the
      best value inside them, since the NLL has one minimum in ``log T``);
    - a result whose NLL is above that of ``T = 1``: ``T = 1`` is returned.

    Args:
        logits (torch.Tensor): Held-out logits, shape ``(N, K)``.
        labels (torch.Tensor): Labels, shape ``(N,)``.
        initial_temperature (float): Starting point. Defaults to 1.0.
        max_iter (int): LBFGS iterations. Defaults to 100.
        bounds (tuple[float, float]): Smallest and largest temperature
            returned. Defaults to :data:`TEMPERATURE_BOUNDS`.

    Returns:
        float: The fitted temperature.
    """
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(
            'logits must have shape (N, K) with N >= 1, got '
            f'{tuple(logits.shape)}: the fit split is empty or '
            'not a logit matrix'
        )
    if not bool(torch.isfinite(logits).all()):
        raise ValueError('logits contain NaN or inf; cannot fit a temperature')
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f'labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}'
        )
    check_number('initial_temperature', initial_temperature, low=0, low_open=True)
    low, high = bounds
    if not 0 < low <= 1 <= high < float('inf'):
        raise ValueError(
            f'bounds must be finite (low, high) with 0 < low <= 1 <= high, got {bounds}'
        )
    num_samples = logits.shape[0]
    if num_samples < MIN_FIT_SAMPLES:
        warnings.warn(
            f'fit_temperature: the fit split has only {num_samples} samples '
            f'(fewer than {MIN_FIT_SAMPLES}); the fitted temperature is '
            'unreliable and can make the calibration worse on other data. '
            'Fit on a larger held-out split (e.g. the whole validation set).',
            stacklevel=2,
        )
    logits = logits.detach().double().cpu()
    labels = labels.detach().long().cpu()
    correct = int((logits.argmax(dim=1) == labels).sum())
    # d NLL / d(1/T) at 1/T = 0; >= 0 means (NLL convex in 1/T) that the NLL
    # only falls as T -> inf
    slope_at_infinity = float(
        (logits.mean(dim=1) - logits.gather(1, labels[:, None])[:, 0]).mean()
    )
    if correct == num_samples:
        warnings.warn(
            f'fit_temperature: all {num_samples} samples of the fit split are '
            'classified correctly, so its NLL keeps falling as T -> 0 and has '
            'no minimum: no temperature can be fitted on it; keeping T = 1 '
            '(no scaling). Fit on a held-out split the model was not trained on, large '
            'enough to contain errors.',
            stacklevel=2,
        )
        return 1.0
    if slope_at_infinity >= 0:
        warnings.warn(
            f'fit_temperature: on the fit split ({num_samples} samples, '
            f'{correct} classified correctly) the logits of the true class '
            'are not above the mean logit, so the NLL keeps falling towards '
            f'uniform predictions (T -> inf); T is clamped to {high}. Check '
            "that the labels match the model's classes and that the module "
            'outputs its logits.',
            stacklevel=2,
        )
        return high
    log_temperature = (
        torch.tensor(float(initial_temperature), dtype=torch.float64)
        .log()
        .requires_grad_()
    )
    optimizer = torch.optim.LBFGS(
        [log_temperature], lr=1.0, max_iter=max_iter, line_search_fn='strong_wolfe'
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_temperature.detach().exp())
    if not low <= temperature <= high:
        # the NLL has one minimum in log T, so it is monotonic inside the
        # bounds and the better bound is the best value there (this also
        # covers a diverged, NaN search)
        clamped = min((low, high), key=lambda t: _nll(logits, labels, t))
        warnings.warn(
            f'fit_temperature: the NLL on the fit split ({num_samples} '
            f'samples, {correct} classified correctly) is lowest at '
            f'T = {temperature:.3g}, outside the bounds {bounds}; T is '
            f'clamped to {clamped}. Check the fit split (too small, or not '
            'held out from training) or widen the bounds.',
            stacklevel=2,
        )
        temperature = clamped
    if _nll(logits, labels, temperature) > _nll(logits, labels, 1.0):
        warnings.warn(
            f'fit_temperature: the fitted T = {temperature:.4g} has a higher '
            f'NLL on the fit split ({num_samples} samples) than T = 1; '
            'keeping T = 1 (no scaling).',
            stacklevel=2,
        )
        temperature = 1.0
    return temperature


def find_logits_module(model: nn.Module, name: str) -> Tuple[str, nn.Module]:
    """Find the sub-module whose output are the logits.

    ``name`` is looked up in ``model``, then (for a ``DistillModel``, whose
    predictions are its student's) in ``model.student``.

    Args:
        model (nn.Module): The unwrapped model.
        name (str): Dotted module path, e.g. ``'head'``.

    Returns:
        tuple[str, nn.Module]: The path relative to ``model`` (e.g.
        ``'student.head'``) and the module.

    Raises:
        ValueError: When neither holds ``name``; names close modules and the
            top-level ones.
    """
    candidates = [('', model)]
    student = getattr(model, 'student', None)
    if isinstance(student, nn.Module):
        candidates.append(('student.', student))
    for prefix, root in candidates:
        try:
            return prefix + name, root.get_submodule(name)
        except AttributeError:
            continue
    names = [n for n, _ in model.named_modules() if n]
    close = [n for n in names if n.endswith(name.split('.')[-1])]
    close += [n for n in difflib.get_close_matches(name, names, n=5) if n not in close]
    raise ValueError(
        f'the model ({type(model).__name__}) has no sub-module {name!r}'
        + (' (nor has its student)' if len(candidates) > 1 else '')
        + f'; give the module whose output are the (N, num_classes) logits, '
        f"e.g. 'head' for mmpretrain classifiers ('student.head' for a "
        f'DistillModel); modules named like it: {close[:10]}; top-level '
        f'modules: {[n for n in names if "." not in n]}'
    )


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f'a tensor of shape {tuple(value.shape)}'
    if isinstance(value, (tuple, list)):
        parts = ', '.join(_describe(v) for v in value[:3])
        return f'a {type(value).__name__} of {len(value)} ({parts})'
    return f'a {type(value).__name__}'


@torch.no_grad()
def collect_logits(
    model: nn.Module, dataloader, module_name: str, what: str = 'the dataloader'
):
    """Run ``test_step`` over a dataloader and capture a module's outputs.

    Args:
        model (BaseModel): The model (unwrapped), in eval mode.
        dataloader (DataLoader): Batches of mmpretrain data samples.
        module_name (str): Dotted path of the logits module, see
            :func:`find_logits_module`.
        what (str): Name of the dataloader in error messages, e.g.
            ``'val_dataloader'``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Logits ``(N, K)`` and labels.
    """
    dataset = getattr(dataloader, 'dataset', None)
    if dataset is not None and len(dataset) == 0:
        raise ValueError(
            f'{what} has 0 samples: temperature scaling needs a held-out '
            'split with samples; check its dataset (data_root, ann_file, '
            'subset_size, ...)'
        )
    module_path, module = find_logits_module(model, module_name)
    captured = []

    def capture(module, args, output):
        if not torch.is_tensor(output) or output.dim() != 2:
            raise ValueError(
                f'module {module_path!r} outputs {_describe(output)}, not '
                'a (N, num_classes) logits tensor: give the module whose '
                "output are the logits, e.g. 'head' for mmpretrain "
                "classifiers ('student.head' for a DistillModel)"
            )
        captured.append(output.detach().float().cpu())

    handle = module.register_forward_hook(capture)
    labels, num_classes = [], set()
    try:
        for data in dataloader:
            outputs = model.test_step(data)
            labels.extend(int(sample.gt_label) for sample in outputs)
            num_classes.update(
                sample.pred_score.numel()
                for sample in outputs
                if 'pred_score' in sample
            )
    finally:
        handle.remove()
    if not captured:
        raise ValueError(
            f'module {module_path!r} never ran during test_step on {what}; '
            "give the module that computes the logits, e.g. 'head'"
        )
    logits = torch.cat(captured)
    if logits.shape[0] != len(labels):
        raise ValueError(
            f'module {module_path!r} produced {logits.shape[0]} rows for '
            f'{len(labels)} samples; it must be the classification head '
            '(one logit row per sample)'
        )
    if num_classes and num_classes != {logits.shape[1]}:
        raise ValueError(
            f'module {module_path!r} outputs {logits.shape[1]} values per '
            f'sample but the model predicts {sorted(num_classes)} classes: it '
            "is not the logits module; give e.g. 'head' for mmpretrain "
            "classifiers ('student.head' for a DistillModel)"
        )
    return logits, torch.tensor(labels)


def _divide_output(temperature: float):

    def hook(module, args, output):
        return output / temperature

    return hook


@HOOKS.register_module()
class TemperatureScalingHook(Hook):
    """Divide a sub-module's output by a fitted temperature at val/test time.

    Training is unaffected: the forward hook is registered before each
    validation/test epoch and removed after it.

    Args:
        temperature (float): The temperature (> 0).
        module (str): Dotted path of the sub-module whose output are the
            logits, relative to the (unwrapped) model. Defaults to 'head'
            (mmpretrain classifiers); e.g. 'student.head' for a wrapper.
        phases (Sequence[str]): Where to apply it, among 'val' and 'test'.
            Defaults to ('val', 'test').
    """

    priority = 'NORMAL'

    def __init__(
        self, temperature: float, module: str = 'head', phases: Sequence[str] = PHASES
    ) -> None:
        check_number('temperature', temperature, low=0, low_open=True)
        unknown = set(phases) - set(PHASES)
        if unknown:
            raise ValueError(f'phases must be among {PHASES}, got {sorted(unknown)}')
        self.temperature = float(temperature)
        self.module = module
        self.phases = tuple(phases)
        self._handle: Optional[torch.utils.hooks.RemovableHandle] = None

    def _target(self, runner) -> torch.nn.Module:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            return find_logits_module(model, self.module)[1]
        except ValueError as error:
            raise ValueError(f'TemperatureScalingHook: {error}') from None

    def _attach(self, runner, phase: str) -> None:
        if phase in self.phases and self._handle is None:
            self._handle = self._target(runner).register_forward_hook(
                _divide_output(self.temperature)
            )

    def _detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def before_val_epoch(self, runner) -> None:
        self._attach(runner, 'val')

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._detach()

    def before_test_epoch(self, runner) -> None:
        self._attach(runner, 'test')

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._detach()
