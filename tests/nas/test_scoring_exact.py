"""The fast AZ-NAS path computes what the official scorer computes: the
Rademacher draw, the channels-last pooling, the closed-form FLOPs, and the cached
NB201 scores of ``docs/nas/nb201_scores.jsonl`` recomputed (bit for bit on the
CPU that wrote them, to 1e-5 relative on another)."""

import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmcompress.nas import NB201Space, NB201Table, count_flops, score_arch
from mmcompress.nas.nb201 import AvgPool3x3
from mmcompress.nas.proxies import rademacher_like
from mmcompress.nas.score_cache import SAME_SCORE_RTOL

CACHE = osp.join(osp.dirname(__file__), '..', '..', 'docs', 'nas', 'nb201_scores.jsonl')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_rademacher_equals_official_bernoulli(dtype):
    x = torch.empty(3, 5, 7, 9, dtype=dtype)
    torch.manual_seed(3)
    official = (torch.bernoulli(torch.full_like(x, 0.5)) - 0.5) * 2
    after_official = torch.rand(4)
    torch.manual_seed(3)
    ours = rademacher_like(x)
    after_ours = torch.rand(4)
    assert ours.dtype == dtype
    assert torch.equal(ours, official)
    # the generator is left in the same state
    assert torch.equal(after_ours, after_official)


def test_avg_pool3x3_bit_identical_to_avg_pool2d():
    torch.manual_seed(0)
    x = torch.randn(4, 16, 9, 8, requires_grad=True)
    g = torch.randn(4, 16, 9, 8)
    ref = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    # a node summing three branches checks the gradient accumulation order too
    y_ref = ref(x) * 2 + ref(ref(x)) + x.sin()
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    pool = AvgPool3x3()
    y = pool(x) * 2 + pool(pool(x)) + x.sin()
    (gx,) = torch.autograd.grad(y, x, g)
    assert y.is_contiguous() and gx.is_contiguous()
    assert torch.equal(y, y_ref)
    assert torch.equal(gx, gx_ref)


def test_score_arch_closed_form_flops_equals_counted():
    space = NB201Space()
    for arch in [(0,) * 6, (3, 1, 2, 4, 3, 0), (2, 2, 2, 2, 2, 2)]:
        counted = count_flops(space.build(arch), space.input_shape)
        assert space.flops(arch) == counted
    # another input size: counted on the built network, not the 32x32 closed form
    small = NB201Space(C=4, N=1)
    arch = (3, 1, 2, 4, 3, 0)
    out = score_arch(small, arch, ['flops'], resolution=8)
    assert out['flops'] == count_flops(small.build(arch), (3, 8, 8))
    assert out['flops'] < small.flops(arch)


def _cached():
    cache = {}
    with open(CACHE) as f:
        for line in f:
            rec = json.loads(line)
            cache.setdefault(rec.pop('index'), {}).update(rec)
    return cache


def test_cached_nb201_scores_recomputed_exactly():
    """Three cached architectures (an average-pooling cell, a NaN-expressivity
    cell, an identity-trainability cell) scored again at one thread: every value
    equal to the cached one (the cache was made by the plain bernoulli /
    NCHW-pooling / counted-FLOPs code on an x86 CPU: bit for bit there, up to
    float32 summation order, up to 1.1e-6 relative, on another x86 CPU)."""
    cache = _cached()
    table = NB201Table()
    space = NB201Space()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in (7648, 11759, 8177):
            arch = tuple(int(v) for v in table.codes[index])
            out = score_arch(space, arch, ['az_nas'], seed=0)
            for key, value in out.items():
                assert value == pytest.approx(
                    cache[index][key], rel=SAME_SCORE_RTOL, abs=0.0
                ), (index, arch, key)
    finally:
        torch.set_num_threads(threads)
    # the three cover the cases named above
    assert 4 in tuple(table.codes[7648])
    assert cache[11759]['expressivity'] == -np.inf
    assert cache[8177]['trainability'] == -np.inf
