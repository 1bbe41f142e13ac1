"""Options of benchmarks/casd_scenes.py: ``--cell-streams`` starts the MIDN
cell streams from the checkpoint the init's OICR configs load, and is refused
for an init without a scenes classifier."""

import os.path as osp

import pytest
from mmengine.config import Config

from ..e2e.runs import REPO, load_script

casd_scenes = load_script('benchmarks', 'casd_scenes.py')


def test_cell_options_name_the_checkpoint_the_init_configs_load():
    options = casd_scenes.cell_options('clslse', ['cls', 'det'])
    oicr_config = casd_scenes.INITS['clslse'][2][casd_scenes.OICR]
    load_from = Config.fromfile(osp.join(REPO, oicr_config)).load_from
    assert options == [
        'model.head.cell_streams=[cls,det]',
        f'model.head.cell_init={load_from}',
    ]


def test_cell_streams_refused_without_a_scenes_classifier():
    with pytest.raises(ValueError, match=r"give --init one of \('cls', 'clslse'\)"):
        casd_scenes.cell_options('fmnist', ['cls'])


def test_casd_weight_runs_get_their_own_rows():
    def record(arm, seed, weight=None, cor=10.0):
        name, config, options = casd_scenes.ARMS[arm]
        if weight is not None:
            options = options + [f'model.casd_iw.loss_weight={weight}']
        return dict(
            arm=arm,
            name=name,
            casd_weight=weight,
            options=options,
            config=config,
            seed=seed,
            schedule='s',
            mAP=1.0,
            CorLoc=cor,
            cls_mAP=None,
        )

    records = [
        record('iw', 0, 1.0, 20.0),
        record('iw', 1, 1.0, 30.0),
        record('iw', 0),
        record('oicr', 0),
    ]
    rows = casd_scenes.markdown_table(records).splitlines()[2:]
    assert [r.split(' | ')[1] for r in rows] == [
        'OICR',
        'OICR + CASD-IW',
        'OICR + CASD-IW, weight 1',
    ]
    assert '25.00 ± 7.07' in rows[2] and '0, 1' in rows[2]
    assert 'model.casd_iw.loss_weight=1.0' in rows[2]


def test_casd_weight_refused_for_the_baseline():
    with pytest.raises(ValueError, match='needs a CASD arm'):
        casd_scenes.run('oicr', 0, 10, casd_weight=1.0)
