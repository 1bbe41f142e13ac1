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
