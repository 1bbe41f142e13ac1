"""Decomposition mistakes: FLOPs target, layer selection, plans, methods."""

import pytest
import torch
from torch import nn

from mmcompress.decompose import apply_plan, decompose_


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 4),
    )


X = (torch.randn(1, 3, 6, 6),)


def test_decompose_flops_target_below_reach():
    """A FLOPs ratio so small that even rank 1 everywhere exceeds it.

    Message: is below what the decomposition can reach
    """
    with pytest.raises(
        ValueError,
        match=r'FLOPs target \d+ is below what the '
        r'decomposition can reach: \d+ .*Raise flops_ratio',
    ):
        decompose_(_net(), X, 0.05, 'group')


def test_decompose_a_linear_layer():
    """include names a Linear layer (only convs are decomposed).

    Message: cannot decompose 3: it is a Linear (supported: plain nn.Conv2d)
    """
    with pytest.raises(
        ValueError,
        match=r'cannot decompose 3: it is a Linear '
        r'\(supported: plain nn.Conv2d\).*add it to exclude',
    ):
        decompose_(_net(), X, 0.5, 'group', include=['0', '3'])


def test_decompose_a_depthwise_conv():
    """include names a depthwise (grouped) conv.

    Message: cannot decompose 1: it is a grouped Conv2d (groups=8
    """
    with pytest.raises(
        ValueError,
        match=r'cannot decompose 1: it is a grouped '
        r'Conv2d \(groups=8; supported: groups=1\)',
    ):
        decompose_(_net(), X, 0.5, 'svd', include=['1'])


def test_decompose_plan_names_a_missing_layer():
    """A DecomposedModel plan written for another model (layer names differ).

    Message: the plan names 'backbone.conv1', which is not a module of Sequential
    """
    with pytest.raises(
        KeyError,
        match=r"the plan names 'backbone.conv1', which "
        r'is not a module of Sequential',
    ):
        apply_plan(_net(), {'backbone.conv1': dict(method='svd', ranks=[2])})


def test_decompose_unknown_method():
    """A decomposition method name that does not exist ('cp').

    Message: method must be one of ('group', 'svd', 'tucker2'), got 'cp'
    """
    with pytest.raises(
        ValueError,
        match=r"method must be one of \('group', "
        r"'svd', 'tucker2'\), got 'cp'",
    ):
        decompose_(_net(), X, 0.5, 'cp')


def test_decompose_flops_ratio_as_a_percentage():
    """--flops-ratio 20 given as a percentage instead of 0.2.

    Message: decompose: flops_ratio must be in (0, 1] (a finite number), got 20.0
    """
    with pytest.raises(
        ValueError,
        match=r'decompose: flops_ratio must be in '
        r'\(0, 1\] \(a finite number\), got 20.0',
    ):
        decompose_(_net(), X, 20, 'group')
