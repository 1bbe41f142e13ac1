"""Architecture-search mistakes: arch strings, spaces, proxies, budgets, resumes."""

import math

import pytest

from mmcompress.nas import NB201Space, aggregate_ranks, parse_nb201, score_arch
from mmcompress.nas.search import Budget, EvolutionSearch


def test_nas_arch_string_missing_a_node():
    """An NB201 arch string with only two of the three nodes.

    Message: has 2 node(s) separated by "+", expected 3
    """
    with pytest.raises(
        ValueError, match=r'has 2 node\(s\) separated by "\+", expected 3'
    ):
        parse_nb201('|nor_conv_3x3~0|+|skip_connect~0|none~1|')


def test_nas_arch_string_unknown_op():
    """An NB201 arch string naming an op of another space (conv_3x3, sep_conv...).

    Message: unknown op 'conv_3x3'; valid ops are
    """
    with pytest.raises(
        ValueError, match=r"unknown op 'conv_3x3'; valid ops are \['none'"
    ):
        parse_nb201('|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|')


def test_nas_arch_string_wrong_input_index():
    """An NB201 arch string whose edges name the wrong input node.

    Message: must read "<op>~0"
    """
    with pytest.raises(
        ValueError, match=r"edge 'none~1' of node 2 must read \"<op>~0\""
    ):
        parse_nb201('|none~0|+|none~1|none~0|+|none~0|none~1|none~2|')


def test_nas_arch_string_wrong_edge_count():
    """An NB201 arch string with too few edges into a node.

    Message: node 3 has 2 input edge(s), expected 3
    """
    with pytest.raises(ValueError, match=r'node 3 has 2 input edge\(s\), expected 3'):
        parse_nb201('|none~0|+|none~0|none~1|+|none~0|none~1|')


def test_nas_arch_string_without_pipes():
    """An NB201 arch string without the enclosing '|' of a node.

    Message: must be "|op~input|..." enclosed in "|"
    """
    with pytest.raises(ValueError, match=r'must be "\|op~input\|\.\.\." enclosed'):
        parse_nb201('none~0+|none~0|none~1|+|none~0|none~1|none~2|')


def test_nas_arch_indices_out_of_range():
    """An NB201 arch given as op indices with a value outside 0-4 or not six long.

    Message: NB201 architecture must be 6 op indices in [0, 4]
    """
    with pytest.raises(ValueError, match=r'must be 6 op indices in \[0, 4\]'):
        NB201Space().build((3, 3, 5, 0, 0, 0))


def test_nas_space_ops_do_not_match():
    """An NB201 space configured with a different or reordered ops list.

    Message: NB201Space ops must be ['none', 'skip_connect'
    """
    with pytest.raises(
        ValueError, match=r"NB201Space ops must be \['none', 'skip_connect'"
    ):
        NB201Space(ops=('none', 'skip_connect', 'nor_conv_3x3'))


def test_nas_unknown_proxy():
    """Scoring with a proxy name that does not exist (e.g. 'grad_norm').

    Message: unknown proxy ['grad_norm']; valid proxies are
    """
    with pytest.raises(ValueError, match=r"unknown proxy \['grad_norm'\]; valid"):
        score_arch(NB201Space(), (0,) * 6, ['grad_norm'])


def test_nas_budget_no_architecture_satisfies():
    """A FLOPs budget below the cheapest architecture of the space.

    Message: satisfies Budget(max_flops=1000000.0, max_params=None) after
    """
    space = NB201Space()
    search = EvolutionSearch(
        space,
        lambda a: dict(f=0.0),
        ['f'],
        Budget(space, max_flops=1e6),
        population=2,
        tournament=1,
        max_tries=20,
    )
    with pytest.raises(
        ValueError,
        match=r'satisfies Budget\(max_flops=1000000.0, max_params=None\) after 20 '
        r'tries \(smallest-FLOPs arch of the space has 7783050 FLOPs\)',
    ):
        search.run(3, progress=False)


def test_nas_nan_proxy_values():
    """A proxy that returns NaN for some architectures (e.g. a zero feature map).

    Message: 2 NaN value(s) of 'expressivity' ranked last (as -inf
    """
    table = dict(
        expressivity=[math.nan, 1.0, math.nan],
        progressivity=[1.0, 2.0, 3.0],
        trainability=[1.0, 2.0, 3.0],
        flops=[1.0, 2.0, 3.0],
    )
    with pytest.warns(UserWarning, match=r"2 NaN value\(s\) of 'expressivity'"):
        agg = aggregate_ranks(table)
    assert agg[1] > agg[0]


def test_nas_resume_with_other_seed(tmp_path):
    """Resuming a search from a work dir that holds a search with another seed.

    Message: holds a search of space='nb201' seed=0, not space='nb201' seed=1
    """
    space = NB201Space()
    state = str(tmp_path / 's.json')
    EvolutionSearch(
        space,
        lambda a: dict(f=0.0),
        ['f'],
        Budget(space),
        population=2,
        tournament=1,
        state_file=state,
    ).run(2, progress=False)
    with pytest.raises(ValueError, match=r"seed=0, not space='nb201' seed=1"):
        EvolutionSearch(
            space,
            lambda a: dict(f=0.0),
            ['f'],
            Budget(space),
            population=2,
            tournament=1,
            seed=1,
            state_file=state,
        )


def test_nas_predictor_search_on_unlabelled_space(tmp_path):
    """Predictor-guided search asked for a space without benchmark labels.

    Message: the mbv2 space has no labelled architectures: use a proxy
    """
    from tools.search import main

    with pytest.raises(ValueError, match=r'the mbv2 space has no labelled arch'):
        main(['--space', 'mbv2', '--proxy', 'predictor', '--work-dir', str(tmp_path)])
