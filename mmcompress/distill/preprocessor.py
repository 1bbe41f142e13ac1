"""The data preprocessor of ``DistillModel``: the student's, plus the teachers'
own ones run on the same raw batch with the same random numbers."""

import random
from typing import Dict

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor
from torch import nn


def get_rng_state() -> tuple:
    """The random states of torch (CPU and CUDA), numpy and ``random``.

    Returns:
        tuple: A state for :func:`set_rng_state`.
    """
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()


def set_rng_state(state: tuple) -> None:
    """Restore the random states saved by :func:`get_rng_state`.

    Args:
        state (tuple): The saved states.
    """
    cpu, cuda, numpy_state, python_state = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


class DistillDataPreprocessor(BaseDataPreprocessor):
    """The student's data preprocessor, plus teachers' own ones if any.

    In evaluation it is exactly the student's preprocessor. In training,
    teachers that need a different preprocessing (e.g. other mean/std) get
    their inputs from their own preprocessor, run on the same raw batch with
    the random state the student's preprocessor started from, so random batch
    augmentations (mixup...) draw the same numbers; they are passed to the
    model as ``teacher_inputs``.

    Args:
        student (nn.Module): The student's preprocessor.
        teachers (dict[str, nn.Module]): Preprocessors of the teachers that
            do not share the student's.
    """

    def __init__(self, student: nn.Module, teachers: Dict[str, nn.Module]) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleDict(teachers)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Preprocess ``data`` (see the class docstring)."""
        if not training or len(self.teachers) == 0:
            return self.student(data, training)
        start = get_rng_state()
        out = dict(self.student(data, training))
        after = get_rng_state()
        teacher_inputs = {}
        for name, preprocessor in self.teachers.items():
            set_rng_state(start)
            teacher_inputs[name] = preprocessor(data, training)['inputs']
        set_rng_state(after)
        out['teacher_inputs'] = teacher_inputs
        return out
