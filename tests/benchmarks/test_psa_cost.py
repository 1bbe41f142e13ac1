"""benchmarks/psa_cost.py: the block table times the plain block, PSA eager and
PSA on the fused kernels on the same input (a tiny case, two iterations)."""

from ..e2e.runs import load_script

psa_cost = load_script('benchmarks', 'psa_cost.py')


def test_block_rows_time_eager_and_fused(monkeypatch):
    monkeypatch.setattr(psa_cost, 'BLOCK_CASES', {'tiny': (16, 6, 5, 2)})
    rows = psa_cost.block_rows(iters=2, warmup=1)
    assert [(r['case'], r['shape'], r['psa']) for r in rows] == [
        ('tiny', '2x16x6x5', 'PSA_p'),
        ('tiny', '2x16x6x5', 'PSA_s'),
    ]
    for r in rows:
        assert r['plain_ms'] > 0 and r['ms'] > 0 and r['fused_ms'] > 0
        assert r['ratio'] == r['ms'] / r['plain_ms']
        assert r['fused_ratio'] == r['fused_ms'] / r['plain_ms']
