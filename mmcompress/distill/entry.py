"""One distillation entry of ``DistillModel``: what is recorded on each side,
the loss that compares it, its adapter, teacher and weight schedule."""

from typing import Optional, Sequence

from .record_spec import RecordSpec
from .schedule import LossWeightSchedule

ENTRY_KEYS = ('student', 'teacher', 'loss', 'adapter', 'teacher_name', 'schedule')


class DistillEntry:
    """One parsed distillation entry.

    Args:
        name (str): Entry name (its loss is logged as
            ``loss_distill_<name>``).
        cfg (dict): The entry config (keys :data:`ENTRY_KEYS`).
        teacher_names (Sequence[str]): Names of the teachers of the model.
        default_schedule (dict, optional): Schedule of entries that set none.
    """

    def __init__(
        self,
        name: str,
        cfg: dict,
        teacher_names: Sequence[str],
        default_schedule: Optional[dict],
    ) -> None:
        unknown = set(cfg) - set(ENTRY_KEYS)
        missing = {'student', 'teacher', 'loss'} - set(cfg)
        if unknown or missing:
            raise KeyError(
                f'Distill entry {name!r}: '
                + (f'unknown keys {sorted(unknown)}; ' if unknown else '')
                + (f'missing keys {sorted(missing)}; ' if missing else '')
                + f'valid keys: {ENTRY_KEYS}.'
            )
        self.name = name
        self.student_specs = RecordSpec.parse(cfg['student'])
        self.teacher_specs = RecordSpec.parse(cfg['teacher'])
        self.loss_cfg = cfg['loss']
        self.adapter_cfg = cfg.get('adapter', 'auto')
        teacher_name = cfg.get('teacher_name')
        if teacher_name is None:
            if len(teacher_names) != 1:
                raise ValueError(
                    f'Distill entry {name!r} must name its teacher with '
                    f'teacher_name=..., one of {list(teacher_names)}.'
                )
            teacher_name = teacher_names[0]
        elif teacher_name not in teacher_names:
            raise KeyError(
                f'Distill entry {name!r}: teacher_name '
                f'{teacher_name!r} is not one of '
                f'{list(teacher_names)}.'
            )
        self.teacher_name = teacher_name
        schedule = cfg.get('schedule', default_schedule)
        self.schedule = LossWeightSchedule(**(schedule or {}))
        self.loss_key = f'loss_distill_{name}'
