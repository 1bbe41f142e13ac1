"""Runner side of the normalization layers: UN's iteration counter (the warm-up
reset for fine-tuning and the optimizer-step counter of ``counter='step'``) and
the re-estimation of batch-norm running statistics on training images."""

from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.nn.modules.batchnorm import _BatchNorm

from mmcompress.registry import HOOKS
from mmcompress.utils.batch_norm import recompute_bn_statistics_from_loader
from mmcompress.utils.checks import check_number

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


@HOOKS.register_module()
class BNReestimationHook(Hook):
    """Re-estimate the batch-norm running statistics on training images at the
    end of training epochs, before the validation and the checkpoint.

    For models whose running statistics do not match their test-time inputs:
    RankMixup with the official own-batch statistics of the mixed forward
    (``RankMixupClassifier(mixed_bn_stats='batch')`` averages raw and mixed
    batches into them; on the converged Fashion-MNIST student this makes the
    model under-confident, docs/calibrate/converged.md). The statistics become
    the exact average over ``num_images`` images of the training dataloader
    (its pipeline, no batch augments, model in train mode without gradients,
    :func:`~mmcompress.utils.batch_norm.recompute_bn_statistics_from_loader`);
    weights do
    not change. In distributed training each process averages its own images
    and the statistics are then averaged over the processes, so every
    process (and the checkpoint) holds the same values.

    Example::

        custom_hooks = [dict(type='BNReestimationHook', num_images=10000)]

    Args:
        num_images (int): Training images per re-estimation and process
            (rounded up to whole batches). Defaults to 10000.
        interval (int): Re-estimate every ``interval`` epochs; the last epoch
            always. Defaults to 1.
    """

    priority = 'NORMAL'  # before CheckpointHook (VERY_LOW) saves the epoch

    def __init__(self, num_images: int = 10000, interval: int = 1) -> None:
        for name, value in (('num_images', num_images), ('interval', interval)):
            check_number(name, value, low=1, owner='BNReestimationHook')
            if not isinstance(value, int):
                raise TypeError(
                    f'BNReestimationHook: {name} must be an int, got {value!r}'
                )
        self.num_images = num_images
        self.interval = interval

    def before_train(self, runner) -> None:
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            raise ValueError(
                'BNReestimationHook re-estimates at epoch ends and needs an '
                f'epoch-based train loop, got {type(runner.train_loop).__name__}; '
                'use train_cfg=dict(by_epoch=True, ...)'
            )

    def after_train_epoch(self, runner) -> None:
        if not (
            self.every_n_epochs(runner, self.interval)
            or self.is_last_train_epoch(runner)
        ):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        images = recompute_bn_statistics_from_loader(
            model, runner.train_dataloader, self.num_images
        )
        if dist.get_world_size() > 1:
            for layer in model.modules():
                if isinstance(layer, _BatchNorm):
                    dist.all_reduce(layer.running_mean, op='mean')
                    dist.all_reduce(layer.running_var, op='mean')
        runner.logger.info(
            f'BNReestimationHook: batch-norm statistics of epoch {runner.epoch + 1} '
            f're-estimated on {images} training images'
        )
