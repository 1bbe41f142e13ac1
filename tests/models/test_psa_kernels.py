"""The fused PSA kernels (``psa_combine`` / ``psa_pool``, and
``PolarizedSelfAttention(fused=True)``) against the eager expressions.

Forward of the combination and every input gradient bit for bit, the reductions
(pooling, per-channel / per-position gradients) to float rounding, gradcheck in
float64, every layout of the block, and the eager fallback where the kernels do
not apply or cannot be built.
"""

import pytest
import torch

from mmcompress.models.plugins import PolarizedSelfAttention, psa_kernels
from mmcompress.models.plugins.psa_kernels import (
    load_psa_kernels,
    psa_combine,
    psa_pool,
)

DTYPES = [torch.float32, torch.float64]
# one row shorter than a lane group, and rows over more than one block of sums
SHAPES = [(2, 3, 5), (3, 4, 600)]


@pytest.fixture(scope='module', autouse=True)
def kernels():
    """The kernels must build here (g++ and ninja are part of the environment)."""
    ops = load_psa_kernels()
    assert ops is not None, psa_kernels.psa_kernel_error()
    return ops


def _leaf(shape, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=dtype).requires_grad_()


def _run(fn, inputs, fused, upstream):
    inputs = [
        None if t is None else t.detach().clone().requires_grad_() for t in inputs
    ]
    out = fn(*inputs, fused=fused)
    live = [t for t in inputs if t is not None]
    return out.detach(), torch.autograd.grad(out, live, upstream)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('factors', ['both', 'channel', 'position'])
def test_combine_matches_eager(dtype, shape, factors):
    n, c, s = shape
    x = _leaf(shape, dtype, 0)
    a = _leaf((n, c), dtype, 1) if factors != 'position' else None
    b = _leaf((n, s), dtype, 2) if factors != 'channel' else None
    upstream = _leaf(shape, dtype, 3).detach()
    out, grads = _run(psa_combine, [x, a, b], True, upstream)
    ref_out, ref_grads = _run(psa_combine, [x, a, b], False, upstream)
    assert torch.equal(out, ref_out)
    assert torch.equal(grads[0], ref_grads[0])  # input gradient: same products
    for got, expected in zip(grads[1:], ref_grads[1:]):  # sums, another order
        torch.testing.assert_close(got, expected)
    assert out.dtype == dtype


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', SHAPES)
def test_pool_matches_eager(dtype, shape):
    n, c, s = shape
    x, q = _leaf(shape, dtype, 0), _leaf((n, s), dtype, 1)
    upstream = _leaf((n, c), dtype, 2).detach()
    out, grads = _run(psa_pool, [x, q], True, upstream)
    ref_out, ref_grads = _run(psa_pool, [x, q], False, upstream)
    torch.testing.assert_close(out, ref_out)
    assert torch.equal(grads[0], ref_grads[0])
    torch.testing.assert_close(grads[1], ref_grads[1])


def test_hand_values():
    """x = [[1, 2], [3, 4]] (one sample, C = 2, HW = 2), a = [1, 10], b = [0.5, 2]."""
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]], requires_grad=True)
    a = torch.tensor([[1.0, 10.0]], requires_grad=True)
    b = torch.tensor([[0.5, 2.0]], requires_grad=True)
    out = psa_combine(x, a, b)
    assert out.tolist() == [[[1.5, 6.0], [31.5, 48.0]]]
    out.backward(torch.ones_like(out))
    assert x.grad.tolist() == [[[1.5, 3.0], [10.5, 12.0]]]
    assert a.grad.tolist() == [[3.0, 7.0]] and b.grad.tolist() == [[4.0, 6.0]]
    x.grad = None
    q = torch.tensor([[0.25, 0.75]], requires_grad=True)
    pooled = psa_pool(x, q)
    assert pooled.tolist() == [[1.75, 3.75]]
    pooled.backward(torch.tensor([[1.0, -1.0]]))
    assert x.grad.tolist() == [[[0.25, 0.75], [-0.25, -0.75]]]
    assert q.grad.tolist() == [[-2.0, -2.0]]


def test_gradcheck():
    x, a = _leaf((2, 3, 9), torch.float64, 0), _leaf((2, 3), torch.float64, 1)
    b = _leaf((2, 9), torch.float64, 2)
    assert torch.autograd.gradcheck(lambda *t: psa_combine(*t), (x, a, b))
    assert torch.autograd.gradcheck(lambda x, b: psa_combine(x, None, b), (x, b))
    assert torch.autograd.gradcheck(lambda x, q: psa_pool(x, q), (x, b))


def _graph(out):
    """Names of the autograd nodes that produced ``out``."""
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(fn for fn, _ in node.next_functions)
    return {type(node).__name__ for node in seen}


@pytest.mark.parametrize('mode', ['parallel', 'sequential'])
@pytest.mark.parametrize('impl', ['official', 'paper'])
def test_block_fused_equals_eager(mode, impl):
    torch.manual_seed(0)
    fused = PolarizedSelfAttention(16, mode=mode, impl=impl, fused=True)
    eager = PolarizedSelfAttention(16, mode=mode, impl=impl, fused=False)
    eager.load_state_dict(fused.state_dict())
    fused, eager = fused.double(), eager.double()
    x = torch.randn(3, 16, 9, 11, dtype=torch.float64)
    upstream = torch.randn(3, 16, 9, 11, dtype=torch.float64)
    results = []
    for block in (fused, eager):
        inputs = [x.clone().requires_grad_(), *block.parameters()]
        out = block(inputs[0])
        results.append((out, *torch.autograd.grad(out, inputs, upstream)))
    assert {'_CombineBackward', '_PoolBackward'} <= _graph(results[0][0])
    assert not {'_CombineBackward', '_PoolBackward'} & _graph(results[1][0])
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected)


def test_eager_where_the_kernel_does_not_apply(monkeypatch):
    x, a = _leaf((2, 3, 4), torch.float32, 0), _leaf((2, 3), torch.float32, 1)
    b = _leaf((2, 4), torch.float32, 2)
    assert type(psa_combine(x, a, b).grad_fn).__name__ == '_CombineBackward'
    with torch.no_grad():  # inference: nothing to save for a backward
        assert torch.equal(psa_combine(x, a, b), x * (a[..., None] + b[:, None]))
    assert type(psa_combine(x, a, b, fused=False).grad_fn).__name__ == 'MulBackward0'
    strided = x.detach().transpose(1, 2).contiguous().transpose(1, 2)
    assert type(psa_pool(strided, b).grad_fn).__name__ == 'SumBackward1'
    assert type(psa_pool(x.half(), b.half()).grad_fn).__name__ == 'SumBackward1'
    # a machine where the kernels could not be built
    monkeypatch.setattr(psa_kernels, '_STATE', {'error': 'RuntimeError: no g++'})
    assert psa_kernels.psa_kernel_error() == 'RuntimeError: no g++'
    assert type(psa_combine(x, a, b).grad_fn).__name__ == 'MulBackward0'
