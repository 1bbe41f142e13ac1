"""Loss-weight schedules of distillation entries (warm-up and early stop)."""

from typing import Optional

from mmengine.logging import MessageHub


class LossWeightSchedule:
    """Multiplier of a distillation loss over training.

    The factor is ``min((epoch + 1) / warmup_epochs, 1)`` (mmengine epochs
    start at 0, so the first epoch gets ``1 / warmup_epochs`` as in the
    official Decoupled KD code), times ``min((iter + 1) / warmup_iters, 1)``,
    and 0 from ``stop_epoch`` / ``stop_iter`` on. ``decay='epoch'`` further
    multiplies by ``1 - epoch / max_epochs`` (DWPose's first-stage weight
    decay), ``decay='iter'`` by ``1 - iter / max_iters``. Epoch, iteration and
    their maxima are read from the MessageHub, which every mmengine train loop
    updates (before training starts, the decay factor is 1).

    Args:
        warmup_epochs (int): Epochs of linear warm-up (0: none).
        warmup_iters (int): Iterations of linear warm-up (0: none).
        stop_epoch (int, optional): First epoch without distillation.
        stop_iter (int, optional): First iteration without distillation.
        decay (str, optional): ``'epoch'`` or ``'iter'``: linear decay
            towards 0 over the training epochs / iterations. Defaults to
            None (no decay).
    """

    def __init__(
        self,
        warmup_epochs: int = 0,
        warmup_iters: int = 0,
        stop_epoch: Optional[int] = None,
        stop_iter: Optional[int] = None,
        decay: Optional[str] = None,
    ) -> None:
        if decay not in (None, 'epoch', 'iter'):
            raise ValueError(
                f"schedule decay must be None, 'epoch' or 'iter', got {decay!r}."
            )
        self.decay = decay
        for name, value in (
            ('warmup_epochs', warmup_epochs),
            ('warmup_iters', warmup_iters),
            ('stop_epoch', stop_epoch or 0),
            ('stop_iter', stop_iter or 0),
        ):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f'schedule {name} must be an int >= 0, got {value!r}.')
        self.warmup_epochs = warmup_epochs
        self.warmup_iters = warmup_iters
        self.stop_epoch = stop_epoch
        self.stop_iter = stop_iter

    def factor(self) -> float:
        """The current multiplier in [0, 1]."""
        if not (
            self.warmup_epochs
            or self.warmup_iters
            or self.decay
            or self.stop_epoch is not None
            or self.stop_iter is not None
        ):
            # constant: no MessageHub look-up (its lock is a graph break
            # under torch.compile)
            return 1.0
        hub = MessageHub.get_current_instance()
        epoch = hub.get_info('epoch', 0) or 0
        it = hub.get_info('iter', 0) or 0
        if (self.stop_epoch is not None and epoch >= self.stop_epoch) or (
            self.stop_iter is not None and it >= self.stop_iter
        ):
            return 0.0
        factor = 1.0
        if self.warmup_epochs:
            factor *= min((epoch + 1) / self.warmup_epochs, 1.0)
        if self.warmup_iters:
            factor *= min((it + 1) / self.warmup_iters, 1.0)
        if self.decay is not None:
            total = hub.get_info(f'max_{self.decay}s')
            if total:
                factor *= max(
                    1.0 - (epoch if self.decay == 'epoch' else it) / total, 0.0
                )
        return factor
