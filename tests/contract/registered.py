"""What the contract tests cover: every loss, quantizer and metric registered by
mmcompress, enumerated from its registries (never a hand-kept list)."""

import mmcompress  # noqa: F401  (registers every component)
from mmcompress.distill.losses.base import DistillLoss
from mmcompress.quant.quantizers import BaseQuantizer
from mmcompress.registry import METRICS, MODELS


def registered_losses() -> dict:
    """Losses in mmcompress's MODELS: ``DistillLoss`` subclasses and every
    other class whose name ends with ``Loss``."""
    return {
        name: cls
        for name, cls in MODELS.module_dict.items()
        if isinstance(cls, type)
        and (issubclass(cls, DistillLoss) or name.endswith('Loss'))
    }


def registered_quantizers() -> dict:
    """``BaseQuantizer`` subclasses in mmcompress's MODELS."""
    return {
        name: cls
        for name, cls in MODELS.module_dict.items()
        if isinstance(cls, type) and issubclass(cls, BaseQuantizer)
    }


def registered_metrics() -> dict:
    """Every metric in mmcompress's METRICS."""
    return dict(METRICS.module_dict)


def missing_and_stale(registered: dict, cases: dict) -> str:
    """A failure message naming classes without a case and stale cases."""
    missing = sorted(set(registered) - set(cases))
    stale = sorted(set(cases) - set(registered))
    lines = []
    if missing:
        lines.append(
            f'registered without a contract case: {missing}; add one '
            'to the table of this file'
        )
    if stale:
        lines.append(f'cases for classes that are not registered: {stale}')
    return '\n'.join(lines)
