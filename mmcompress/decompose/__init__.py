"""Structural decomposition of trained convs for cheaper inference:
filter-group approximation (group conv + 1x1 mixing) with channel-SVD and
Tucker-2 baselines, per-layer ranks from one global FLOPs target, FLOPs
counting. See docs/decompose.md."""

from .allocate import Candidate, allocate, layer_candidates
from .factorize import group_factors, tucker2_factors
from .flops import conv_flops, count_flops, total_flops
from .layers import METHODS, DecomposedConv2d
from .transform import (
    FLOPS_OF,
    apply_plan,
    build_decomposed_model,
    decompose_,
    plan_decomposition,
    select_convs,
)

__all__ = [
    'FLOPS_OF',
    'METHODS',
    'Candidate',
    'DecomposedConv2d',
    'allocate',
    'apply_plan',
    'build_decomposed_model',
    'conv_flops',
    'count_flops',
    'decompose_',
    'group_factors',
    'layer_candidates',
    'plan_decomposition',
    'select_convs',
    'total_flops',
    'tucker2_factors',
]
