"""benchmarks/ciss_step_time.py times what it names: the DKD step distils from
a frozen previous model (every KD term), the fine-tuning step has no KD term,
the plain segmentor is mmseg's EncoderDecoder, and every mode is timed."""

import torch
from mmseg.models.segmentors import EncoderDecoder

from mmcompress.datasets.scenes import generate_scenes

from ..e2e.runs import load_script

ciss_step_time = load_script('benchmarks', 'ciss_step_time.py')


def test_modes_compute_what_they_are_named(tmp_path, deterministic):
    root = str(tmp_path / 'scenes')
    generate_scenes('seg', root, split='small')
    runs, data = ciss_step_time.setup(root)
    dkd, finetune, plain = (runs[k][0] for k in ('dkd', 'finetune', 'plain'))
    assert dkd.previous_model is not None
    assert not any(p.requires_grad for p in dkd.previous_model.parameters())
    # the new head starts as the auxiliary classifier (DKD's novel init)
    heads = dkd.classifier.heads
    assert torch.equal(heads[2].weight, heads[0].weight.expand_as(heads[2].weight))
    with torch.no_grad():
        dkd_terms = set(dkd(**data, mode='loss'))
        finetune_terms = set(finetune(**data, mode='loss'))
    assert dkd_terms == {
        'loss_mbce',
        'loss_ac',
        'loss_kd',
        'loss_dkd_pos',
        'loss_dkd_neg',
    }
    assert finetune_terms == {'loss_mbce', 'loss_ac'}
    assert type(plain) is EncoderDecoder
    assert data['inputs'].shape == (4, 3, 128, 128)
    result = ciss_step_time.run_timing(1, 0, root)
    assert set(result['ms']) == {'dkd', 'pair', 'finetune', 'teacher', 'plain'}
    assert all(v > 0 for v in result['ms'].values())
    ms = result['ms']
    assert result['ratio'] == ms['dkd'] / ms['pair']
