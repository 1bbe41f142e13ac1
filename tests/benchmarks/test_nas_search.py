"""The repeated-search benchmark: per-seed picks, their NB201 accuracies, the
mean +- std and the doc block."""

import json
import sys

import numpy as np

from mmcompress.nas import NB201Space, NB201Table

from ..e2e.runs import load_script

nas_search = load_script('benchmarks', 'nas_search.py')
TABLE = NB201Table()


def test_random_search_seeds_summary_and_block(tmp_path, monkeypatch):
    page = tmp_path / 'page.md'
    page.write_text(
        '# page\n\n<!-- nas-search-random:begin -->\nold\n'
        '<!-- nas-search-random:end -->\n'
    )
    argv = ['nas_search.py', '--proxy', 'flops', '--steps', '6', '--seeds', '1', '2']
    argv += ['--work-dir', str(tmp_path / 'w'), '--json', str(tmp_path / 'r.json')]
    monkeypatch.setattr(sys, 'argv', argv + ['--out', str(page)])
    nas_search.main()
    result = json.load(open(tmp_path / 'r.json'))
    space = NB201Space()
    c10 = []
    for row in result['rows']:
        state = json.load(
            open(tmp_path / 'w' / f'random_seed{row["seed"]}' / 'search_state.json')
        )
        archs = [tuple(h['arch']) for h in state['history']]
        assert len(archs) == 6
        # the FLOPs proxy picks the largest of the six draws
        assert row['arch'] == space.to_str(max(archs, key=space.flops))
        acc = TABLE.accuracy(space.from_str(row['arch']))
        assert row['acc']['cifar10'] == acc
        assert row['best_scored_c10'] == max(TABLE.accuracy(a) for a in archs)
        assert row['c10_rank_in_space'] == 1 + int((TABLE.acc[:, 0] > acc).sum())
        c10.append(acc)
    assert np.isclose(result['summary']['cifar10']['mean'], np.mean(c10))
    assert np.isclose(result['summary']['cifar10']['std'], np.std(c10))
    text = page.read_text()
    assert 'old' not in text and f'{np.mean(c10):.2f} ± {np.std(c10):.2f}' in text
    # the arch strings' '|' are escaped inside the table cells
    row = next(line for line in text.splitlines() if line.startswith('| 1 |'))
    assert row.count(' | ') == 7 and '`\\|' in row


def test_protocol_spread_picks_the_aggregation_argmax():
    rng = np.random.default_rng(0)
    idx = rng.choice(len(TABLE), 30, replace=False)
    keys = ('expressivity', 'progressivity', 'trainability', 'flops')
    cache = {int(i): {k: float(rng.normal()) for k in keys} for i in idx}
    cache[-1] = {'flops': 1.0}  # no AZ-NAS values: not in the pool
    # a draw of all 30 is the whole pool: every draw picks the same architecture
    full = nas_search.protocol_spread(cache, TABLE, 30, 4)
    agg = nas_search.aggregate_ranks(
        {k: [cache[i][k] for i in sorted(map(int, idx))] for k in keys}
    )
    best = sorted(map(int, idx))[int(np.argmax(agg))]
    assert full['mean'] == TABLE.acc[best, 0] and full['std'] == 0.0
    # draws of 5: each pick is the argmax within its own draw
    part = nas_search.protocol_spread(cache, TABLE, 5, 3)
    assert part['draws'] == 3 and part['steps'] == 5
