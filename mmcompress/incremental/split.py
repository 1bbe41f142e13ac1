"""Task splits of class-incremental semantic segmentation (CISS).

A split says which foreground classes each incremental step adds. It is given
as a string over the dataset's foreground classes ``1..C`` in their order:

* ``'N0-N1-...-Nk'``: step 0 learns ``N0`` classes, step 1 the next ``N1``...
  ``'6-2-2'`` on the 10 scene garments gives ``[1..6], [7, 8], [9, 10]``;
* ``'NxK'`` repeats a step size: ``'4-1x6'`` is ``'4-1-1-1-1-1-1'``;
* the two-part shorthand of the literature, ``'N0-N1'`` with ``N0 + N1 < C``,
  repeats ``N1`` until every class is learnt: on VOC (20 classes) ``'15-1'``
  is ``15-1-1-1-1-1`` and ``'10-1'`` has 11 steps; on ADE20K (150)
  ``'100-10'`` has 6 steps and ``'50-50'`` 3;
* ``'joint'``: one step with every class (the joint-training upper bound).

or as an explicit list of per-step class-id lists (any order; the ids are
remapped to ``1..`` in the order given, see :mod:`.dataset`).

Background is label 0 and belongs to no step's list: it is always an "old"
class. These are the task definitions of the official DKD code
(``data_loader/task.py``), written as a rule instead of a table.
"""

import re
from typing import List, Sequence, Union

SPLIT_FORM = (
    "'N0-N1[-N2...]' with positive integers (a part 'NxK' repeats N K times; "
    "'N0-N1' repeats N1 until all classes are covered), e.g. '15-5', '15-1', "
    "'6-2-2', '4-1x6', 'joint', or a list of per-step class-id lists"
)
_PART = re.compile(r'^([1-9][0-9]*)(?:x([1-9][0-9]*))?$')


def _parse_sizes(split: str, num_classes: int) -> List[int]:
    """Step sizes of a split string (module docstring)."""
    if split == 'joint':
        return [num_classes]
    sizes = []
    for part in split.split('-'):
        match = _PART.match(part.strip())
        if match is None:
            raise ValueError(
                f'Split {split!r} does not parse: part {part!r} is not a '
                f'positive integer or NxK. Valid form: {SPLIT_FORM}.'
            )
        sizes += [int(match.group(1))] * int(match.group(2) or 1)
    total = sum(sizes)
    if total > num_classes:
        raise ValueError(
            f'Split {split!r} names {total} classes but the dataset has '
            f'{num_classes} foreground classes (background excluded). Valid '
            f'form: {SPLIT_FORM}.'
        )
    if total < num_classes:
        rest = num_classes - total
        two_part = len(sizes) == 2 and 'x' not in split
        if not two_part or rest % sizes[1]:
            raise ValueError(
                f'Split {split!r} covers {total} of the {num_classes} '
                'foreground classes; only a two-part split N0-N1 whose N1 '
                'divides the remaining classes repeats its last step. '
                f'Valid form: {SPLIT_FORM}.'
            )
        sizes += [sizes[1]] * (rest // sizes[1])
    return sizes


def parse_split(
    split: Union[str, Sequence[Sequence[int]]], num_classes: int
) -> List[List[int]]:
    """The class ids each step adds.

    Args:
        split (str | list[list[int]]): A split string or explicit per-step
            lists of class ids (module docstring).
        num_classes (int): Foreground classes of the dataset (background
            excluded), e.g. 20 for VOC, 150 for ADE20K, 10 for the scenes.

    Returns:
        list[list[int]]: Per step, the dataset class ids it adds.
    """
    if isinstance(split, str):
        steps, ids = [], 1
        for size in _parse_sizes(split.strip(), num_classes):
            steps.append(list(range(ids, ids + size)))
            ids += size
        return steps
    if not isinstance(split, (list, tuple)) or not all(
        isinstance(s, (list, tuple)) and s for s in split
    ):
        raise TypeError(
            f'Split {split!r} is neither a string nor a list of non-empty '
            f'class-id lists. Valid form: {SPLIT_FORM}.'
        )
    steps = [[int(c) for c in step] for step in split]
    seen = {}
    for index, step in enumerate(steps):
        for cls in step:
            if not 1 <= cls <= num_classes:
                raise ValueError(
                    f'Split {split!r}: class id {cls} of step {index} is not a '
                    f'foreground class of the dataset (1..{num_classes}; 0 is '
                    'background and belongs to no step).'
                )
            if cls in seen:
                raise ValueError(
                    f'Split {split!r}: class {cls} is in step {seen[cls]} and in '
                    f'step {index}; step class lists must not overlap.'
                )
            seen[cls] = index
    return steps


def check_step(split, steps: List[List[int]], step: int) -> int:
    """``step`` if it indexes ``steps``, else a ``ValueError`` naming the split.

    Args:
        split (str | list): The split as given (for the message).
        steps (list[list[int]]): Its parsed steps.
        step (int): The step index.

    Returns:
        int: ``step``.
    """
    if not isinstance(step, int) or isinstance(step, bool):
        raise TypeError(f'step must be an int, got {step!r}.')
    if not 0 <= step < len(steps):
        raise ValueError(
            f'step {step} is out of range for split {split!r}, which has '
            f'{len(steps)} steps (valid: 0..{len(steps) - 1}).'
        )
    return step
