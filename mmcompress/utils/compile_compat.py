"""mmengine's ``compile=True`` with today's torch: the optimizer update stays eager.

mmengine's ``Runner`` (0.10.7) compiles the model's ``train_step``
(``torch.compile(model.train_step, **cfg.compile)``), so dynamo traces the
whole step: data preprocessor, forward, loss parsing, and ``optim_wrapper.
update_params``, i.e. ``loss.backward()`` and ``optimizer.step()``. With torch
2.13 tracing the step fails for every optimizer that mmengine's
``DefaultOptimWrapperConstructor`` builds with a ``paramwise_cfg``: the
constructor assigns the list of parameter groups into a ``ConfigDict``, which
turns each group into a ``ConfigDict`` (a ``dict`` subclass), and dynamo's
optimizer support (``OptimizerVariable._set_capturable``, run when the step
reads ``param_groups``) handles only plain-dict groups::

    InternalTorchDynamoError: AttributeError: 'UserDefinedDictVariable' object
    has no attribute 'items'

:func:`install_compile_fix` wraps ``Runner._maybe_compile``; once mmengine has
compiled ``train_step``:

* the runner's optimizer wrapper runs ``update_params`` (backward, step,
  zero_grad) outside dynamo (``torch.compiler.disable``). The compiled graph
  ends at the parsed loss; the backward pass runs the compiled backward graph
  (AOT autograd) and the optimizer step runs eagerly, as without ``compile``;
* the first training iteration runs the eager ``train_step``, later ones the
  compiled one. The first batch initializes what is set from data (quantizer
  ranges and output scales of a QAT model, lazy modules); those
  initializations are not traceable, and a graph break inside ``train_step``
  (within mmengine's ``optim_context``) makes dynamo give up on the whole
  ``train_step`` for the rest of the run, compiling module frames one by one
  instead.

Runs without ``compile`` are unchanged.
"""

import functools

import torch
from mmengine.runner import Runner


def _compile_enabled(cfg) -> bool:
    """Whether mmengine compiles for this config (``compile=True`` or a dict)."""
    option = cfg.get('compile', None)
    return option is not None and option is not False


def _eager_update_params(optim_wrapper) -> None:
    """Make ``optim_wrapper.update_params`` run outside dynamo (idempotent)."""
    update = optim_wrapper.update_params
    if getattr(update, '_mmcompress_eager', False):
        return
    eager = torch.compiler.disable(update)
    eager._mmcompress_eager = True
    optim_wrapper.update_params = eager


def _eager_first_call(model, target: str, eager) -> None:
    """Make the first call of ``model.<target>`` run ``eager``, later calls
    the compiled function mmengine set."""
    compiled = getattr(model, target)
    if compiled is eager:
        return
    pending = [True]

    @functools.wraps(eager)
    def first_eager(*args, **kwargs):
        if pending:
            pending.clear()
            return eager(*args, **kwargs)
        return compiled(*args, **kwargs)

    setattr(model, target, first_eager)


def install_compile_fix() -> None:
    """Keep the optimizer update of a compiled ``train_step`` eager (idempotent;
    module docstring)."""
    maybe_compile = Runner._maybe_compile
    if getattr(maybe_compile, '_mmcompress_compile_fix', False):
        return

    @functools.wraps(maybe_compile)
    def _maybe_compile(self, target: str) -> None:
        eager = getattr(self.model, target)
        maybe_compile(self, target)
        if target == 'train_step' and _compile_enabled(self.cfg):
            _eager_update_params(self.optim_wrapper)
            _eager_first_call(self.model, target, eager)

    _maybe_compile._mmcompress_compile_fix = True
    Runner._maybe_compile = _maybe_compile
