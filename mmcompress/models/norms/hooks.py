"""Runner side of UN's iteration counter: the warm-up reset for fine-tuning and
the optimizer-step counter of ``counter='step'``."""

from mmengine.hooks import Hook

from mmcompress.registry import HOOKS

from .un import UN, set_un_iters


def _un_layers(model):
    return [m for m in model.modules() if isinstance(m, UN)]


@HOOKS.register_module()
class UNIterHook(Hook):
    """Manage the ``iters`` counter of every :class:`UN` in the trained model.

    * ``reset_iters=True``: ``iters`` restarts at 0 when training starts from
      loaded weights (the official fine-tuning tip: the warm-up runs again);
      a resumed run (``resume=True``) keeps its counter.
    * UN layers with ``counter='step'``: before each iteration ``iters`` is set
      to the optimizer step, ``offset + runner.iter // k + 1``, with ``k`` the
      optim wrapper's ``accumulative_counts`` (the micro-batches of one
      step share one value) and ``offset`` the counter value training
      started from (0 after a reset).

    Args:
        reset_iters (bool): Restart the counter on a non-resumed run.
            Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self, reset_iters: bool = False) -> None:
        self.reset_iters = bool(reset_iters)
        self._offset = 0

    @staticmethod
    def _accumulation(runner) -> int:
        return int(getattr(runner.optim_wrapper, '_accumulative_counts', 1) or 1)

    def before_train(self, runner) -> None:
        layers = _un_layers(runner.model)
        if not layers:
            runner.logger.warning('UNIterHook: the model has no UN layer')
            return
        if self.reset_iters and not runner._resume:
            set_un_iters(runner.model, 0)
            runner.logger.info(f'UNIterHook: iters of {len(layers)} UN layers reset')
        start = int(layers[0].iters.item())
        self._offset = start - runner.iter // self._accumulation(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        step = self._offset + runner.iter // self._accumulation(runner) + 1
        for layer in _un_layers(runner.model):
            if layer.counter == 'step':
                layer.iters.fill_(step)
