"""The input of ``DistillModel``'s build-time dry forward.

Student and teachers run once at build time on a random batch (see
``docs/distill/guide.md``). The batch has the layout the models' ``forward``
receives, i.e. after the data preprocessor:

* ``input_shape`` given: that per-sample shape, any rank (``(C, H, W)``
  images, ``(C, L)`` sequences, ``(C, T, H, W)`` clips...);
* otherwise from the student: the number of spatial dimensions from its data
  preprocessor (normalisation buffers shaped ``(C, 1, 1)`` mean images,
  ``(C, 1, 1, 1)`` clips, ``(C, 1)`` sequences), else from its first
  convolution (``Conv1d``/``Conv2d``/``Conv3d``), else images; the channels
  from its first convolution of that rank, else from the preprocessor, else 3;
  the sizes from :data:`DEFAULT_SIZES`.

:func:`run_recorded` runs one model on it with its recorder, and
:func:`dry_run_teachers` runs every teacher and sets where its forward may
stop in training. Data samples carry image meta (``img_shape``,
``batch_input_shape``...) from the last two dimensions when the input has at
least two spatial dimensions; a student with a ``dry_run_data_samples(inputs,
samples)`` method completes them (e.g. the HR target that a super-resolution
teacher with privileged input reads).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from torch import nn

from .recorders import FeatureRecorder, StopForward

#: Sizes of the spatial dimensions by their number, when not configured.
DEFAULT_SIZES = {1: (224,), 2: (224, 224), 3: (16, 112, 112)}
_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _preprocessor_layout(model: nn.Module) -> Tuple[Optional[int], Optional[int]]:
    """(spatial dims, channels) read from the normalisation buffer of the
    model's data preprocessor; (None, None) when it has none."""
    mean = getattr(getattr(model, 'data_preprocessor', None), 'mean', None)
    if (
        isinstance(mean, torch.Tensor)
        and mean.dim() >= 2
        and all(size == 1 for size in mean.shape[1:])
    ):
        return mean.dim() - 1, mean.shape[0]
    return None, None


def default_input_shape(model: nn.Module) -> Tuple[Tuple[int, ...], str]:
    """The per-sample dry-run input shape of ``model`` (module docstring).

    Args:
        model (nn.Module): The student.

    Returns:
        tuple: The shape and a description of where it came from.
    """
    spatial, channels = _preprocessor_layout(model)
    if spatial is not None:
        source = f'the data preprocessor ({type(model.data_preprocessor).__name__})'
    else:
        first = next(
            (m for m in model.modules() if isinstance(m, tuple(_CONVS.values()))), None
        )
        spatial = next(
            (dims for dims, conv in _CONVS.items() if isinstance(first, conv)), 2
        )
        source = (
            'the image default'
            if first is None
            else f'the first convolution ({type(first).__name__})'
        )
    conv = next(
        (m for m in model.modules() if isinstance(m, _CONVS.get(spatial, ()))), None
    )
    if conv is not None:
        channels = conv.in_channels
    elif channels is None:
        channels = 3
    return (channels, *DEFAULT_SIZES.get(spatial, (224,) * spatial)), source


def check_input_shape(input_shape) -> Tuple[int, ...]:
    """``input_shape`` as a tuple after checking it holds positive ints.

    Args:
        input_shape (Sequence[int]): Per-sample shape of the dry forward.

    Returns:
        tuple[int]: The shape.
    """
    if (
        isinstance(input_shape, (int, str))
        or not isinstance(input_shape, Sequence)
        or len(input_shape) == 0
        or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0
            for s in input_shape
        )
    ):
        raise ValueError(
            'input_shape must be the per-sample input shape as positive ints '
            '(after the data preprocessor, without the batch dimension), '
            'e.g. (3, 224, 224) for images or (C, L) for sequences; got '
            f'{input_shape!r}.'
        )
    return tuple(input_shape)


def dry_run_batch(
    model: nn.Module, input_shape: Optional[Sequence[int]] = None, batch_size: int = 2
) -> Tuple[torch.Tensor, List[BaseDataElement], str]:
    """A seeded random batch for the dry forward of ``model``.

    Args:
        model (nn.Module): The student (its layout gives the default shape).
        input_shape (Sequence[int], optional): Per-sample shape.
        batch_size (int): Batch size. Defaults to 2.

    Returns:
        tuple: Inputs, data samples, and a description of the shape used.
    """
    if input_shape is not None:
        shape = check_input_shape(input_shape)
        source = 'input_shape'
    else:
        shape, source = default_input_shape(model)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn((batch_size, *shape), generator=generator)
    meta = {}
    if len(shape) >= 3:
        height, width = shape[-2:]
        meta = dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            pad_shape=(height, width),
            batch_input_shape=(height, width),
            input_size=(width, height),
            scale_factor=(1.0, 1.0),
        )
    samples = [BaseDataElement(metainfo=meta) for _ in range(batch_size)]
    fill = getattr(model, 'dry_run_data_samples', None)
    if callable(fill):  # e.g. an SR student adds the HR target its teacher reads
        fill(inputs, samples)
    return inputs, samples, f'per-sample shape {shape} from {source}'


def run_recorded(
    model: nn.Module,
    recorder: FeatureRecorder,
    inputs,
    data_samples,
    role: str,
    layout: str,
) -> None:
    """Run ``model``'s tensor forward with ``recorder`` on; mark the recorded
    values that an in-place op modifies later for cloning.

    Args:
        model (nn.Module): Student or teacher.
        recorder (FeatureRecorder): Its recorder.
        inputs (Tensor): The dry-run batch.
        data_samples (list): Its data samples.
        role (str): ``'student'`` / ``"teacher 'name'"``, used in messages.
        layout (str): Where the batch shape came from, used in messages.
    """
    with recorder:
        try:
            model(inputs, data_samples, mode='tensor')
        except StopForward:
            pass
        except Exception as err:
            raise RuntimeError(
                f'The build-time dry forward of the {role} failed on a '
                f'random batch of {layout} ({type(err).__name__}: {err}). '
                'Set `input_shape` of DistillModel to the per-sample input '
                'shape the model accepts (after the data preprocessor, e.g. '
                '(3, 224, 224)).'
            ) from err
    switched = recorder.mark_inplace_clones()
    if switched:
        print_log(
            f'{role}: {switched} are modified in place after being '
            'recorded; they are cloned when recorded.',
            logger='current',
        )


def dry_run_teachers(
    teachers: Dict[str, nn.Module],
    recorders: Dict[str, FeatureRecorder],
    entries: list,
    inputs: torch.Tensor,
    data_samples: list,
    layout: str,
) -> Dict[str, List[torch.Tensor]]:
    """Run each teacher once and set, on its recorder, after how many calls
    of each recorded module its training forward may stop.

    Args:
        teachers (dict[str, nn.Module]): Teachers by name.
        recorders (dict[str, FeatureRecorder]): Their recorders.
        entries (list[DistillEntry]): The distillation entries.
        inputs (Tensor): The dry-run batch.
        data_samples (list): Its data samples.
        layout (str): Where the batch shape came from, used in messages.

    Returns:
        dict[str, list[Tensor]]: The teacher records by entry name.
    """
    records_T = {}
    for name, teacher in teachers.items():
        recorder = recorders[name]
        run_recorded(
            teacher, recorder, inputs, data_samples, f'teacher {name!r}', layout
        )
        counts = recorder.call_counts()
        stop_after = {}
        for entry in entries:
            if entry.teacher_name != name:
                continue
            for spec in entry.teacher_specs:
                records_T[entry.name] = recorder.get(entry.name)
                stop_after[id(spec)] = (
                    counts[id(spec)] if spec.needs_all_calls else spec.call + 1
                )
        recorder.stop_after = stop_after
    return records_T
