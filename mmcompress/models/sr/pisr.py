"""PISR (Lee et al., ECCV 2020): a teacher that sees the HR image (privileged
information) through an encoder and decodes it with an FSRCNN, and the hook that
initialises the student FSRCNN from the teacher's decoder.

Stage 1 trains :class:`PISRTeacher`; stage 2 trains a ``DistillModel`` whose
student is :class:`.FSRCNN` and whose teacher is the stage-1 teacher, with
:class:`~mmcompress.distill.losses.VIDLoss` between the two ``expanding``
outputs and :class:`InitStudentFromTeacherHook` copying the decoder into the
student (configs in ``configs/pisr/``, guide in ``docs/models/pisr.md``).
"""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseModel, is_model_wrapper

from mmcompress.registry import HOOKS, MODELS
from mmcompress.utils.checks import check_number

from .data import (
    attach_predictions,
    check_pair,
    check_scale,
    one_by_one,
    stack_targets,
)
from .fsrcnn import FSRCNN, conv_prelu


@MODELS.register_module()
class PISRTeacher(BaseModel):
    """Encoder + FSRCNN decoder trained on HR inputs (PISR step 1).

    The encoder (official ``lcscc``): ``Conv5x5(C -> d) + PReLU ->
    Conv5x5 stride scale (d -> d) + PReLU -> Conv3x3(d -> s) + PReLU ->
    Conv3x3(s -> C)`` maps the HR image to a learned LR image; ``decoder`` is
    an :class:`.FSRCNN` of the same scale. Loss:
    ``L1(decoder(encoder(HR)), HR) + imitation_weight * L1(encoder(HR), LR)``.
    Every mode reads the HR image from the data samples (``gt_img``); the LR
    input is used by the imitation loss only.

    Args:
        scale (int): Upscaling factor. Defaults to 2.
        in_channels (int): Image channels. Defaults to 1.
        d (int): Feature channels. Defaults to 56.
        s (int): Shrunk channels. Defaults to 12.
        m (int): Mapping layers of the decoder. Defaults to 4.
        imitation_weight (float): Weight of the imitation loss. Defaults to
            1e-4 (official step 1).
        data_preprocessor (dict, optional): Defaults to
            ``SRDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 1,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        imitation_weight: float = 1e-4,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type='SRDataPreprocessor'),
            init_cfg=init_cfg,
        )
        self.scale = check_scale(scale, type(self).__name__)
        self.imitation_weight = check_number('imitation_weight', imitation_weight, 0)
        self.encoder = nn.Sequential(
            *conv_prelu(in_channels, d, 5),
            *conv_prelu(d, d, 5, stride=scale),
            *conv_prelu(d, s, 3),
            nn.Conv2d(s, in_channels, 3, padding=1),
        )
        self.decoder = FSRCNN(scale, in_channels, d, s, m)

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        """``'loss'``: ``loss_sr`` and ``loss_imitation``; ``'predict'``: data
        samples with ``pred_img``; ``'tensor'``: the SR batch.

        Args:
            inputs (Tensor | list[Tensor]): LR batch (N, C, h, w), or a list
                of (C, h, w) test images of different sizes.
            data_samples (list): Data samples with the HR ``gt_img``.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.
        """
        if isinstance(inputs, (list, tuple)):
            return one_by_one(self, inputs, data_samples, mode)
        owner = type(self).__name__
        hr = stack_targets(data_samples, owner).to(inputs)
        check_pair(inputs, hr, self.scale, owner)
        encoded = self.encoder(hr)
        sr = self.decoder.generate(encoded)
        if mode == 'tensor':
            return sr
        if mode == 'predict':
            return attach_predictions(data_samples, sr)
        if mode == 'loss':
            return dict(
                loss_sr=F.l1_loss(sr, hr),
                loss_imitation=self.imitation_weight * F.l1_loss(encoded, inputs),
            )
        raise ValueError(f'Invalid mode {mode!r}; valid: loss, predict, tensor.')


@HOOKS.register_module()
class InitStudentFromTeacherHook(Hook):
    """Copy a part of the teacher into the student of a ``DistillModel`` before
    training starts (PISR: the student FSRCNN starts as the teacher's decoder).

    Skipped when the run resumes (iteration > 0) or loads ``load_from`` (the
    loaded weights win).

    Args:
        teacher_prefix (str): Prefix of the teacher's state-dict keys to copy,
            e.g. ``'decoder.'``. Defaults to ``'decoder.'``.
        teacher_name (str): The teacher in a multi-teacher model. Defaults to
            ``'teacher'``.
    """

    priority = 'VERY_HIGH'

    def __init__(
        self, teacher_prefix: str = 'decoder.', teacher_name: str = 'teacher'
    ) -> None:
        self.teacher_prefix = teacher_prefix
        self.teacher_name = teacher_name

    def before_train(self, runner) -> None:
        """Copy the weights (see the class docstring)."""
        if runner.iter > 0 or getattr(runner, '_load_from', None):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        teachers = getattr(model, 'teachers', None)
        if not teachers or self.teacher_name not in teachers:
            raise ValueError(
                'InitStudentFromTeacherHook needs a DistillModel with a teacher '
                f'named {self.teacher_name!r}, got {type(model).__name__}'
                + (f' with teachers {sorted(teachers)}' if teachers else '')
            )
        source = {
            key[len(self.teacher_prefix) :]: value
            for key, value in teachers[self.teacher_name].state_dict().items()
            if key.startswith(self.teacher_prefix)
        }
        student_keys = set(model.student.state_dict())
        missing = sorted(k for k in student_keys if k not in source)
        unused = sorted(k for k in source if k not in student_keys)
        if (
            not source
            or unused
            or any(not k.startswith('data_preprocessor') for k in missing)
        ):
            raise ValueError(
                f'InitStudentFromTeacherHook: the teacher keys under '
                f'{self.teacher_prefix!r} do not match the student: student keys '
                f'without a source {missing[:5]}, teacher keys without a target '
                f'{unused[:5]}'
            )
        model.student.load_state_dict(source, strict=False)
        print_log(
            f'Student initialised from teacher {self.teacher_name!r} keys '
            f'{self.teacher_prefix}* ({len(source)} tensors)',
            logger='current',
        )
