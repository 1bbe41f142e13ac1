"""The LBT initialisation hook: skip the optimizer step of the walk-down
iteration, and say what happens when a resumed checkpoint lacks gamma.

The walk-down itself runs inside the gradient quantizer's first backward
(:class:`~mmcompress.quant.grad.quantizer.LBTGradQuantizer`); the original
code then skips that iteration's optimizer step, which this hook does: before
an iteration in which some LBT quantizer is not initialized, the optimizer
wrapper's ``step`` is replaced by a no-op for that iteration (gradients are
still zeroed; learning-rate schedulers advance as usual). This happens once
per run, on the first iteration with a pending walk-down (a resumed checkpoint
carries the ``initialized`` buffers, so a resumed LBT run skips nothing:
the hook skips only while no LBT gamma is initialised yet); a
layer whose first errors are all zero initialises on its first non-zero error,
without a skipped step.

In distributed training every rank quantizes its own errors, so its
controllers would drift apart; after every iteration the hook replaces each
LBT gamma by its mean over the ranks on which that layer's controller is
initialised (one ``all_reduce`` of all gammas). Every rank then quantizes the
next backward with the same gamma, and the checkpoint (rank 0's) holds the
gamma all ranks use. The original code trains on one GPU; the mean over ranks
is this implementation's choice (``sync_gamma=False`` keeps per-rank gammas).
"""

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmcompress.registry import HOOKS

from .quantizer import LBTGradQuantizer


def _lbt_quantizers(runner) -> dict:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, LBTGradQuantizer) and m.interval == 'lbt'
    }


@HOOKS.register_module()
class LBTIntervalInitHook(Hook):
    """Skip the optimizer step of the iteration that initialises LBT gammas,
    and keep the gammas equal across ranks in distributed training.

    Put it in ``custom_hooks`` of every config with
    ``g=dict(type='LBTGradQuantizer', interval='lbt')``.

    Args:
        sync_gamma (bool): After every iteration, set each LBT gamma to its
            mean over the ranks where that controller is initialised (a no-op
            without distributed training). Defaults to True.
    """

    priority = 'NORMAL'

    def __init__(self, sync_gamma: bool = True) -> None:
        self.sync_gamma = sync_gamma
        self._quantizers = None
        self._done = False
        self._skipping = None
        self._nonfinite = 0

    def lbt_quantizers(self, runner) -> dict:
        """The model's LBT gradient quantizers by name (found once: the module
        tree does not change during training)."""
        if self._quantizers is None:
            self._quantizers = _lbt_quantizers(runner)
        return self._quantizers

    def before_train(self, runner) -> None:
        if not self.lbt_quantizers(runner):
            runner.logger.warning(
                'LBTIntervalInitHook: the model has no LBTGradQuantizer with '
                "interval='lbt'; the hook does nothing (remove it, or set "
                "quant.g=dict(type='LBTGradQuantizer', bits=...))"
            )
            self._done = True

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return
        state = checkpoint.get('state_dict', {})
        missing = [
            name
            for name in self.lbt_quantizers(runner)
            if not any(k.endswith(f'{name}.gamma') for k in state)
        ]
        if missing:
            runner.logger.warning(
                f'LBTIntervalInitHook: the resumed checkpoint has no LBT '
                f'controller state (gamma) for {len(missing)} gradient '
                f'quantizers (e.g. {missing[0]}): their gamma is initialised '
                'again by the walk-down on the next iteration, whose '
                'optimizer step is skipped. Resume from a checkpoint of the '
                'LBT run to continue its gamma trajectory'
            )

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._done:
            return
        quantizers = list(self.lbt_quantizers(runner).values())
        pending = [q for q in quantizers if q.needs_init]
        if len(pending) < len(quantizers):
            # a controller already running (resumed): nothing to skip
            self._done = True
            return
        # once per run: a layer whose first errors are all zero (e.g. behind
        # a zero-initialised BN) initialises later, with the step taken
        self._done = True
        wrapper = runner.optim_wrapper
        self._skipping = wrapper
        wrapper.step = lambda *args, **kwargs: None
        runner.logger.info(
            f'LBTIntervalInitHook: iteration {runner.iter}: walk-down '
            f'initialisation of {len(pending)} LBT gammas; optimizer step skipped'
        )

    def after_train_iter(
        self, runner, batch_idx: int, data_batch=None, outputs=None
    ) -> None:
        if self._skipping is not None:
            del self._skipping.step
            self._skipping = None
        if self.sync_gamma:
            average_gamma_over_ranks(self.lbt_quantizers(runner).values())
        self.check_nonfinite(runner)

    def check_nonfinite(self, runner) -> None:
        """Warn when backward passes met NaN / inf errors since the last
        check (one device synchronisation per iteration)."""
        quantizers = self.lbt_quantizers(runner)
        if not quantizers:
            return
        counts = [
            int(v)
            for v in torch.stack(
                [q.num_nonfinite for q in quantizers.values()]
            ).tolist()
        ]
        total = sum(counts)
        if total > self._nonfinite:
            names = [n for n, c in zip(quantizers, counts) if c]
            runner.logger.warning(
                f'LBTGradQuantizer: {total - self._nonfinite} backward passes '
                f'met NaN/inf gradients (layers: {names[:3]}); they were '
                'passed on unquantized and left gamma unchanged. Lower the '
                'learning rate or use AMP loss scaling (which skips such steps)'
            )
        self._nonfinite = total


def average_gamma_over_ranks(quantizers) -> None:
    """Set each LBT gamma to its mean over the ranks on which that quantizer
    is initialised (one ``all_reduce``); a no-op on a single process.

    A quantizer that no rank has initialised keeps its gamma; a rank whose
    quantizer is still pending takes the mean too (its walk-down, which starts
    from gamma = 1, overwrites it).

    Args:
        quantizers (Iterable[LBTGradQuantizer]): The LBT gradient quantizers.
    """
    quantizers = list(quantizers)
    if get_world_size() < 2 or not quantizers:
        return
    gamma = torch.stack([q.gamma for q in quantizers]).double()
    ready = torch.stack([q.initialized for q in quantizers]).double()
    sums = torch.cat([gamma * ready, ready])
    all_reduce(sums, op='sum')
    total, count = sums.chunk(2)
    mean = torch.where(count > 0, total / count.clamp(min=1), gamma)
    for q, value in zip(quantizers, mean):
        q.gamma.copy_(value)
