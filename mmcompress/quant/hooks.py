"""Training hooks of the quantization methods.

:class:`EWGSHessianDeltaHook` re-estimates the EWGS gradient-scaling factors
``delta`` from the Hessian trace every N epochs, as the official EWGS code does
(``update_grad_scales``): for every EWGS quantizer, with ``x_q`` its discretizer
output and ``g = dL/dx_q``,

    ``Tr(H)`` by Hutchinson: mean over Rademacher ``v`` of ``v^T H v`` (at most
    ``max_iter`` samples, stopping when the running mean changes by less than
    ``tol`` relatively), then ``delta = (Tr(H) / numel(x_q)) / (3 std(g))``,

averaged over ``num_batches`` training batches (and over ranks in distributed
training) and clipped at 0. The values are
written into the quantizers' ``delta`` buffers, so checkpoints carry them.
"""

from typing import Callable, List, Optional, Sequence

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmcompress.registry import HOOKS
from mmcompress.utils.checks import check_number

from .quantizers.ewgs import EWGSQuantizer


def hutchinson_trace(
    grad: Tensor,
    point: Tensor,
    max_iter: int = 50,
    tol: float = 1e-3,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Hutchinson estimate of the trace of the Hessian ``d grad / d point``.

    Args:
        grad (Tensor): ``dL/dpoint`` computed with ``create_graph=True``.
        point (Tensor): The tensor the Hessian is taken with respect to.
        max_iter (int): Maximum number of Rademacher samples. Defaults to 50.
        tol (float): Stop when ``|mean - previous| / (previous + 1e-6) < tol``.
            Defaults to 1e-3.
        generator (torch.Generator, optional): RNG for the probe vectors.

    Returns:
        float: The trace estimate.
    """
    estimates = []
    previous = 0.0
    for _ in range(max_iter):
        probe = torch.randint(0, 2, point.shape, generator=generator, device='cpu').to(
            point.device, point.dtype
        )
        probe = probe * 2 - 1
        (hvp,) = torch.autograd.grad(grad, point, grad_outputs=probe, retain_graph=True)
        estimates.append(float((hvp * probe).sum()))
        mean = sum(estimates) / len(estimates)
        if abs(mean - previous) / (abs(previous) + 1e-6) < tol:
            return mean
        previous = mean
    return sum(estimates) / len(estimates)


def estimate_ewgs_deltas(
    loss_fn: Callable[[], Tensor],
    quantizers: Sequence[EWGSQuantizer],
    max_iter: int = 50,
    tol: float = 1e-3,
    generator: Optional[torch.Generator] = None,
) -> List[float]:
    """EWGS deltas from one loss evaluation.

    Args:
        loss_fn (Callable[[], Tensor]): Runs the model forward and returns the
            scalar loss; the quantizers record their discretizer outputs.
        quantizers (Sequence[EWGSQuantizer]): The quantizers to estimate.
        max_iter (int): Hutchinson samples per quantizer. Defaults to 50.
        tol (float): Hutchinson early-stopping tolerance. Defaults to 1e-3.
        generator (torch.Generator, optional): RNG for the probe vectors.

    Returns:
        list[float]: One (unclipped) delta per quantizer.
    """
    for quantizer in quantizers:
        quantizer.record_output = True
        quantizer.last_discretized = None
    try:
        loss = loss_fn()
        points = [q.last_discretized for q in quantizers]
        missing = [i for i, p in enumerate(points) if p is None]
        if missing:
            raise RuntimeError(
                f'{len(missing)} EWGS quantizers were not run by the loss '
                'function; the Hessian delta needs every quantizer in the '
                'forward pass'
            )
        grads = torch.autograd.grad(loss, points, create_graph=True)
        deltas = []
        for point, grad in zip(points, grads):
            trace = hutchinson_trace(grad, point, max_iter, tol, generator)
            grad_std = float(grad.detach().std())
            deltas.append(
                trace / point.numel() / (3 * grad_std) if grad_std > 0 else 0.0
            )
        return deltas
    finally:
        for quantizer in quantizers:
            quantizer.record_output = False
            quantizer.last_discretized = None


@HOOKS.register_module()
class EWGSHessianDeltaHook(Hook):
    """Update EWGS deltas from the Hessian trace every ``interval`` epochs.

    Runs before training epochs ``interval, 2*interval, ...`` (never before
    epoch 0, as the official code: the first interval trains with the initial
    delta, 0 = STE unless set in the quantizer config). Uses ``num_batches``
    batches of the training loader in training mode.

    Args:
        interval (int): Epochs between updates (official: 10 on CIFAR, 1 on
            ImageNet). Defaults to 10.
        num_batches (int): Batches averaged per update (official: 3 / 10).
            Defaults to 3.
        max_iter (int): Hutchinson samples per quantizer. Defaults to 50.
        tol (float): Hutchinson early-stopping tolerance. Defaults to 1e-3.
        seed (int): Seed of the probe vectors. Defaults to 0.
    """

    priority = 'NORMAL'

    def __init__(
        self,
        interval: int = 10,
        num_batches: int = 3,
        max_iter: int = 50,
        tol: float = 1e-3,
        seed: int = 0,
    ) -> None:
        for name, value in (
            ('interval', interval),
            ('num_batches', num_batches),
            ('max_iter', max_iter),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f'EWGSHessianDeltaHook: {name} must be an int >= 1, got {value!r}'
                )
        self.interval = interval
        self.num_batches = num_batches
        self.max_iter = max_iter
        self.tol = check_number(
            'tol', tol, low=0, low_open=True, owner='EWGSHessianDeltaHook'
        )
        self.seed = seed

    def before_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        if epoch == 0 or epoch % self.interval:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        quantizers = [m for m in model.modules() if isinstance(m, EWGSQuantizer)]
        if not quantizers:
            runner.logger.warning(
                'EWGSHessianDeltaHook: the model has no '
                'EWGSQuantizer; nothing to update'
            )
            return
        generator = torch.Generator().manual_seed(self.seed + epoch)
        totals = [0.0] * len(quantizers)
        batches = 0
        for data_batch in runner.train_dataloader:
            if batches == self.num_batches:
                break

            def loss_fn(batch=data_batch):
                data = model.data_preprocessor(batch, True)
                losses = model(**data, mode='loss')
                loss, _ = model.parse_losses(losses)
                return loss

            deltas = estimate_ewgs_deltas(
                loss_fn, quantizers, self.max_iter, self.tol, generator
            )
            totals = [t + d for t, d in zip(totals, deltas)]
            batches += 1
        model.zero_grad(set_to_none=True)
        means = torch.tensor(totals, dtype=torch.float64) / max(batches, 1)
        if dist.get_world_size() > 1:
            dist.all_reduce(means, op='mean')
        for quantizer, mean in zip(quantizers, means.tolist()):
            quantizer.delta.fill_(max(mean, 0.0))
        values = [round(float(q.delta), 6) for q in quantizers]
        runner.logger.info(
            f'EWGSHessianDeltaHook (epoch {epoch}): deltas '
            f'updated from {batches} batches: {values}'
        )
