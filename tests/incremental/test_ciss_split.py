"""Split strings and explicit lists -> per-step class lists."""

import pytest

from mmcompress.incremental.split import check_step, parse_split


@pytest.mark.parametrize(
    'split, num_classes, sizes',
    [
        ('15-5', 20, [15, 5]),
        ('15-1', 20, [15, 1, 1, 1, 1, 1]),
        ('10-1', 20, [10] + [1] * 10),
        ('5-3', 20, [5, 3, 3, 3, 3, 3]),
        ('19-1', 20, [19, 1]),
        ('100-50', 150, [100, 50]),
        ('100-10', 150, [100] + [10] * 5),
        ('50-50', 150, [50, 50, 50]),
        ('6-2-2', 10, [6, 2, 2]),
        ('4-1x6', 10, [4] + [1] * 6),
        ('joint', 10, [10]),
    ],
)
def test_split_sizes_match_the_official_tasks(split, num_classes, sizes):
    """Step sizes as the official ``data_loader/task.py`` tables (VOC 20 and
    ADE 150 classes) and the scenes splits; classes taken in order from 1."""
    steps = parse_split(split, num_classes)
    assert [len(s) for s in steps] == sizes
    assert [c for s in steps for c in s] == list(range(1, num_classes + 1))


def test_explicit_lists_keep_their_order():
    assert parse_split([[3, 1], [2], [4]], 4) == [[3, 1], [2], [4]]


def test_check_step_returns_valid_steps():
    steps = parse_split('6-2-2', 10)
    assert [check_step('6-2-2', steps, s) for s in range(3)] == [0, 1, 2]
    with pytest.raises(TypeError, match='step must be an int'):
        check_step('6-2-2', steps, 1.0)
