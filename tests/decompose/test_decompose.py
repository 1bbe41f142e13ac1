"""Decomposition: exact at full rank, errors as computed, FLOPs counts, the
FLOPs-target allocation and loading of float / decomposed checkpoints."""

import copy

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import load_checkpoint, save_checkpoint
from torch import nn

from mmcompress.decompose import (
    Candidate,
    DecomposedConv2d,
    allocate,
    apply_plan,
    count_flops,
    decompose_,
    group_factors,
    layer_candidates,
    plan_decomposition,
    total_flops,
)


def _conv(cin=8, cout=12, k=3, stride=2, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=1, bias=bias)


def _recompose(layer: DecomposedConv2d) -> torch.Tensor:
    """The dense weight the parts compute (a conv of a basis input)."""
    weights = [p.weight.double() for p in layer]
    if layer.method == 'tucker2':
        first, core, last = weights
        return torch.einsum(
            'oq,qrkl,ri->oikl', last[:, :, 0, 0], core, first[:, :, 0, 0]
        )
    first, mix = weights
    groups = layer[0].groups
    o, gr = mix.shape[:2]
    r = gr // groups
    blocks = first.reshape(groups, r, -1)  # (g, r, I/g k k)
    mixing = mix[:, :, 0, 0].reshape(o, groups, r)
    dense = torch.einsum('ogr,grx->ogx', mixing, blocks)
    return dense.reshape(o, -1, *first.shape[-2:])


@pytest.mark.parametrize(
    'method,ranks',
    [
        ('group', (1, 12)),
        ('group', (4, 12)),
        ('group', (8, 9)),
        ('svd', (12,)),
        ('tucker2', (8, 12)),
    ],
)
def test_full_rank_decomposition_is_exact(method, ranks):
    conv = _conv()
    layer = DecomposedConv2d(conv, method, ranks)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        assert (layer(x) - conv(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize('method', ['group', 'svd', 'tucker2'])
def test_candidate_errors_match_the_reconstructed_weight(method):
    conv = _conv(bias=False, seed=1)
    w = conv.weight.detach().double()
    cands = layer_candidates(conv, method, (9, 9), (5, 5))
    assert cands[0].ranks == () and cands[0].error == 0
    for cand in cands[1::7]:
        layer = DecomposedConv2d(conv, method, cand.ranks)
        actual = float((_recompose(layer) - w).pow(2).sum() / w.pow(2).sum())
        if method == 'tucker2':  # HOSVD bound; HOOI only improves on it
            assert actual <= cand.error + 1e-6
        else:
            assert actual == pytest.approx(cand.error, rel=1e-5, abs=1e-8)


def test_group_approximation_beats_channel_svd_at_equal_group_conv_cost():
    """Rank r per group of g groups costs the k x k stage as much as channel
    SVD rank r, with g * r mixing inputs: its error is never larger."""
    conv = _conv(cin=16, cout=16, seed=2)
    w = conv.weight.detach()
    svd = layer_candidates(conv, 'svd', (9, 9), (5, 5))
    group = {c.ranks: c for c in layer_candidates(conv, 'group', (9, 9), (5, 5))}
    for r in (1, 2, 4):
        assert group[(4, r)].error <= svd[r].error + 1e-9
    first, mix = group_factors(w, 4, 2)
    assert first.shape == (8, 4, 3, 3) and mix.shape == (16, 8, 1, 1)


def test_flops_counts_by_hand_and_against_mmengine():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8x8 out of 16x16
        nn.Conv2d(8, 8, 3, padding=1, groups=4),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    )
    x = torch.randn(4, 3, 16, 16)
    table = count_flops(model, (x,))
    assert table['0']['flops'] == 8 * 8 * 8 * 3 * 9
    assert table['0']['in_hw'] == (16, 16) and table['0']['out_hw'] == (8, 8)
    assert table['1']['flops'] == 8 * 8 * 8 * 2 * 9
    assert table['3']['flops'] == 512 * 10
    expected = FlopAnalyzer(model, (x[:1],)).total()
    assert total_flops(model, (x,)) == expected


def _net():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(4, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 5),
    )


@pytest.mark.parametrize('method', ['group', 'svd', 'tucker2'])
def test_decompose_meets_the_flops_target_and_keeps_other_names(method):
    model = _net()
    x = torch.randn(2, 4, 12, 12)
    before = total_flops(model, (x,))
    keys = set(model.state_dict())
    plan = decompose_(model, (x,), 0.3, method)
    assert total_flops(model, (x,)) <= 0.3 * before
    assert plan and all(
        isinstance(model.get_submodule(n), DecomposedConv2d) for n in plan
    )
    new_keys = set(model.state_dict())
    kept = {k for k in keys if not any(k.startswith(n + '.') for n in plan)}
    assert kept <= new_keys and '7.weight' in new_keys
    for name in plan:  # the float keys stay load targets
        assert f'{name}.weight' in new_keys and f'{name}.0.weight' in new_keys


def test_selected_budget_halves_only_the_selected_layers():
    # a detector-style budget: the last two convs ("backbone") at -50 % of
    # their own FLOPs, the first conv untouched; '[24]' is a wildcard and
    # skips the ReLU at index 3 without an error
    model = _net()
    x = torch.randn(1, 4, 12, 12)
    table = count_flops(model, (x,))
    selected = table['2']['flops'] + table['4']['flops']
    other = total_flops(model, (x,)) - selected
    plan = decompose_(model, (x,), 0.5, 'svd', include=['[2-4]'], flops_of='selected')
    assert set(plan) <= {'2', '4'} and plan
    after = count_flops(model, (x,))
    kept = sum(entry['flops'] for name, entry in after.items() if name[0] not in '24')
    assert kept == other  # conv 0 and the Linear keep their FLOPs
    assert 0.4 * selected <= total_flops(model, (x,)) - other <= 0.5 * selected


def test_wildcard_include_skips_what_an_exact_name_refuses():
    # '[0-7]' matches the ReLUs, the pooling and the Linear: skipped; the
    # exact name of the Linear is an error naming it
    plan = decompose_(
        _net(), (torch.randn(1, 4, 12, 12),), 0.5, 'svd', include=['[0-7]']
    )
    assert plan and set(plan) <= {'0', '2', '4'}
    with pytest.raises(ValueError, match=r'cannot decompose 7: it is a Linear'):
        decompose_(_net(), (torch.randn(1, 4, 12, 12),), 0.5, 'svd', include=['7'])


def test_unknown_flops_budget_base_is_refused():
    with pytest.raises(ValueError, match=r"flops_of must be one of \('model', "):
        decompose_(_net(), (torch.randn(1, 4, 12, 12),), 0.5, flops_of='backbone')


def test_allocation_minimises_the_summed_error_on_a_toy_table():
    cands = {
        'a': [
            Candidate(100, 0.0, ()),
            Candidate(50, 0.1, (1,)),
            Candidate(20, 0.5, (2,)),
        ],
        'b': [
            Candidate(100, 0.0, ()),
            Candidate(50, 0.01, (1,)),
            Candidate(20, 0.02, (2,)),
        ],
    }
    choice = allocate(cands, other_flops=10, target=140)  # 130 for a + b
    assert {n: c.ranks for n, c in choice.items()} == {'a': (), 'b': (2,)}
    choice = allocate(cands, other_flops=10, target=100)  # 90 for a + b
    assert {n: c.ranks for n, c in choice.items()} == {'a': (1,), 'b': (2,)}
    choice = allocate(cands, other_flops=10, target=1000)
    assert all(c.ranks == () for c in choice.values())


def test_float_checkpoint_initialises_and_decomposed_checkpoint_restores():
    model = _net()
    x = torch.randn(2, 4, 12, 12)
    float_state = copy.deepcopy(model.state_dict())
    decomposed = copy.deepcopy(model)
    plan = decompose_(decomposed, (x,), 0.4, 'group')
    fresh = apply_plan(_net(), plan, init_from_weights=False)
    torch.manual_seed(9)
    for p in fresh.parameters():
        p.data.normal_()
    result = fresh.load_state_dict(float_state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), decomposed(x))
    again = apply_plan(_net(), plan, init_from_weights=False)
    again.load_state_dict(decomposed.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(again(x), decomposed(x))


class _Wrapped(BaseModel):
    """An OpenMMLab model around the conv net (mmengine's load path)."""

    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.net(inputs)


def test_float_checkpoint_load_reports_no_placeholder(tmp_path, capsys):
    # mmengine's load_checkpoint of the float model into the decomposed one:
    # the placeholders' float tensors are factorised, nothing is "optional
    # state starting from its initialization"
    float_model = _Wrapped()
    path = str(tmp_path / 'float.pth')
    save_checkpoint(dict(state_dict=float_model.state_dict()), path)
    x = torch.randn(2, 4, 12, 12)
    plan = plan_decomposition(float_model.net, (x,), 0.4, 'svd')
    model = _Wrapped()
    apply_plan(model.net, plan, init_from_weights=False)
    MMLogger.get_instance('test_float_checkpoint_load')
    load_checkpoint(model, path)
    assert 'declares optional' not in capsys.readouterr().out
    expected = apply_plan(copy.deepcopy(float_model.net), plan)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), expected(x))
