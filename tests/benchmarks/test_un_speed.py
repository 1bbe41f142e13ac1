"""benchmarks/un_speed.py: the Amdahl bound of the profile block is computed
from the LN graph's norm kernels (LayerNormalization and its fusions)."""

import argparse

from ..e2e.runs import load_script

un_speed = load_script('benchmarks', 'un_speed.py')


def _profile(op_ms):
    return dict(run_ms=1.0, op_ms=op_ms, nodes={op: 1 for op in op_ms})


def test_profile_block_bound_is_one_over_one_minus_the_norm_share():
    profiles = {
        1: dict(
            ln=_profile(dict(MatMul=0.5, LayerNormalization=0.2, Add=0.3)),
            un=_profile(dict(MatMul=0.5, Add=0.3)),
        ),
        64: dict(
            ln=_profile(dict(MatMul=3.0, SkipLayerNormalization=1.0)),
            un=_profile(dict(MatMul=3.0, Add=0.2)),
        ),
    }
    args = argparse.Namespace(threads=1, profile_runs=7)
    text = un_speed.profile_markdown(profiles, args, 'Load average: quiet.')
    rows = [line for line in text.splitlines() if line.startswith('| 1 |')]
    # f = 0.2 / 1.0, bound 1 / 0.8; LN / UN kernels 1.0 / 0.8
    assert rows == ['| 1 | 1.000 | 0.200 | 0.200 | 1.250 | 0.800 | 1.250 |']
    rows = [line for line in text.splitlines() if line.startswith('| 64 |')]
    # the fused residual Add counts as norm time: f = 1 / 4, bound 4 / 3
    assert rows == ['| 64 | 4.000 | 1.000 | 0.250 | 1.333 | 3.200 | 1.250 |']
    ops = [line.split(' | ')[0] for line in text.splitlines() if line[:3] == '| M']
    assert ops == ['| MatMul']
    assert '7 inferences' in text
    assert 'Load average: quiet.' in text
