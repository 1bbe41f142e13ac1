"""The training loss of ``DistillModel`` (:class:`DistillLossMixin`): a teacher
pass (each needed teacher runs without gradients up to its last recorded
value), a student pass (its own task losses, recording its values) and the
distillation terms (adapters, scheduled loss weights, named terms).

As mmdet's ``*TestMixin`` classes do for heads, the mixin keeps one idea of the
model class in its own module; it uses the attributes ``DistillModel`` builds
(``student``, ``_teachers``, ``_entries``, recorders, ``adapters``,
``distill_losses``).
"""

import contextlib
from typing import Dict, List, Optional

import torch

from .entry import DistillEntry
from .recorders import StopForward
from .terms import call_loss, gt_labels_of, warn_if_no_student_grad, zero_loss


class DistillLossMixin:
    """``loss()`` of :class:`~mmcompress.distill.DistillModel`."""

    def loss(
        self,
        inputs: torch.Tensor,
        data_samples: Optional[list],
        teacher_inputs: Optional[Dict[str, torch.Tensor]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Student task losses plus weighted distillation losses.

        Args:
            inputs (Tensor): The student's preprocessed inputs.
            data_samples (list, optional): Data samples of the batch.
            teacher_inputs (dict[str, Tensor], optional): Inputs of teachers
                with their own preprocessing.

        Returns:
            dict[str, Tensor]: The student's losses (``loss`` renamed
            ``loss_student``), then ``loss_distill_<entry>[_<term>]``.
        """
        factors = {e.name: e.schedule.factor() for e in self._entries}
        records_T = self._teacher_pass(inputs, data_samples, teacher_inputs, factors)
        losses = self._student_pass(inputs, data_samples)
        self._distill_terms(losses, records_T, factors, inputs, data_samples)
        # the recorded tensors live on in the autograd graph only
        self._student_recorder.clear()
        for recorder in self._teacher_recorders.values():
            recorder.clear()
        return losses

    def _teacher_pass(
        self,
        inputs: torch.Tensor,
        data_samples: Optional[list],
        teacher_inputs: Optional[Dict[str, torch.Tensor]],
        factors: Dict[str, float],
    ) -> Dict[str, List[torch.Tensor]]:
        """Run each teacher that an active entry needs, without gradients,
        up to its last recorded value.

        Returns:
            dict[str, list[Tensor]]: Teacher records by entry name.
        """
        records_T = {}
        for name, teacher in self._teachers.items():
            entries = [
                e
                for e in self._entries
                if e.teacher_name == name and factors[e.name] > 0
            ]
            if not entries:
                continue
            recorder = self._teacher_recorders[name]
            teacher_in = (teacher_inputs or {}).get(name, inputs)
            dtype = self._teacher_dtypes[name]
            # without a precision of its own the teacher follows the
            # surrounding autocast (AMP training) like the student
            precision = (
                torch.autocast(teacher_in.device.type, dtype=dtype)
                if dtype is not None
                else contextlib.nullcontext()
            )
            # entered by hand, not by ``with``: torch.compile traces the
            # recorder's methods but not a user-defined context manager
            recorder.__enter__()
            try:
                with torch.no_grad(), precision:
                    try:
                        teacher(teacher_in, data_samples, mode='tensor')
                    except StopForward:
                        pass
            finally:
                recorder.__exit__(None, None, None)
            for entry in entries:
                records_T[entry.name] = recorder.get(entry.name)
        return records_T

    def _student_pass(
        self, inputs: torch.Tensor, data_samples: Optional[list]
    ) -> Dict[str, torch.Tensor]:
        """The student's own losses (weighted by ``student_loss_weight``),
        recording its values for the distillation terms."""
        self._student_recorder.__enter__()  # not ``with``: see _teacher_pass
        try:
            student_losses = self.student(inputs, data_samples, mode='loss')
        finally:
            self._student_recorder.__exit__(None, None, None)
        losses = {}
        for key, value in student_losses.items():
            if 'loss' in key and self.student_loss_weight != 1.0:
                value = (
                    [v * self.student_loss_weight for v in value]
                    if isinstance(value, (list, tuple))
                    else value * self.student_loss_weight
                )
            # mmengine logs the total as 'loss': keep a student loss of that
            # name (mmpretrain's) visible under its own name
            losses['loss_student' if key == 'loss' else key] = value
        return losses

    def _distill_terms(
        self,
        losses: Dict[str, torch.Tensor],
        records_T: Dict[str, List[torch.Tensor]],
        factors: Dict[str, float],
        inputs: torch.Tensor,
        data_samples: Optional[list],
    ) -> None:
        """Add each entry's scheduled distillation loss (or its named terms)
        to ``losses``; a key clash with another loss is an error."""
        gt_labels = None
        for entry in self._entries:
            if entry.loss_key in losses:
                raise KeyError(
                    f'Distill entry {entry.name!r}: its loss key '
                    f'{entry.loss_key!r} clashes with a student '
                    'loss; rename the entry.'
                )
            factor = factors[entry.name]
            if factor == 0:
                losses[entry.loss_key] = zero_loss(
                    (
                        self.adapters[entry.name]
                        if entry.name in self.adapters
                        else None,
                        self.distill_losses[entry.name],
                    ),
                    inputs,
                )
                continue
            feats_S = self._student_recorder.get(entry.name)
            if entry.name not in self._grad_warned and warn_if_no_student_grad(
                entry.name, feats_S
            ):
                self._grad_warned.add(entry.name)
            feats_T = records_T[entry.name]
            if entry.name in self.adapters:
                feats_S = self.adapters[entry.name](feats_S, feats_T)
            if gt_labels is None and 'gt_labels' in self._loss_kwargs[entry.name]:
                gt_labels = gt_labels_of(data_samples, entry.name)
            value = self._call_loss(entry, feats_S, feats_T, gt_labels, data_samples)
            if isinstance(value, dict):
                for term, term_value in value.items():
                    key = f'{entry.loss_key}_{term}'
                    if key in losses:
                        raise KeyError(
                            f'Distill entry {entry.name!r}: its '
                            f'loss term {key!r} clashes with '
                            'another loss; rename the entry.'
                        )
                    losses[key] = factor * term_value
            else:
                losses[entry.loss_key] = factor * value

    def _call_loss(
        self,
        entry: DistillEntry,
        feats_S: List[torch.Tensor],
        feats_T: List[torch.Tensor],
        gt_labels,
        data_samples,
    ):
        return call_loss(
            self.distill_losses[entry.name],
            self._loss_kwargs[entry.name],
            feats_S,
            feats_T,
            gt_labels=gt_labels,
            data_samples=data_samples,
            student_model=self.student,
            teacher_model=self._teachers[entry.teacher_name],
        )
