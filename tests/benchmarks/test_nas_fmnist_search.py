"""benchmarks/nas_fmnist_search.py: the equal-FLOPs hand-made baseline, the
command line, the per-run options, the config of the baseline and the table."""

import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmcompress.nas.mbv2_space import MobileNetSpace

from ..e2e.runs import REPO, load_script

bench = load_script('benchmarks', 'nas_fmnist_search.py')


class DepthSpace:
    """Stand-in for MobileNetSpace: FLOPs = sum of depth x stage weight, plus
    1 per kernel-5 stage and 2 per expansion-3 stage (closed form, no build)."""

    widths = (1, 1, 1)
    weights = (100, 10, 1)

    def check(self, arch):
        return tuple(tuple(s) for s in arch)

    def flops(self, arch):
        return sum(
            d * w + (k == 5) + 2 * (e == 3) for (d, k, e), w in zip(arch, self.weights)
        )

    def to_str(self, arch):
        return '-'.join(f'd{d}k{k}e{e}' for d, k, e in arch)


def test_baseline_is_the_closest_k3e6_depth_setting():
    space = DepthSpace()
    # 2*100 + 1*10 + 3*1 + 1 (k5 in stage 1) + 2 (e3 in stage 2) = 216:
    # k3e6 settings have FLOPs 100 d1 + 10 d2 + d3; 213 (d 2,1,3) is 3 away,
    # 221 (d 2,2,1) 5 away
    searched = ((2, 5, 6), (1, 3, 3), (3, 3, 6))
    arch, flops = bench.handmade_baseline(space, searched, tolerance=0.05)
    assert arch == ((2, 3, 6), (1, 3, 6), (3, 3, 6))
    assert flops == 213


def test_baseline_ties_go_to_the_smaller_depths():
    space = DepthSpace()
    space.weights = (2, 2, 1)
    # searched: 2 + 2 (e3) + 2 + 1 = 7; k3e6 settings with 2 d1 + 2 d2 + d3 = 7:
    # (1, 1, 3), (1, 2, 1), (2, 1, 1), all exact -> the smallest depth tuple
    arch, flops = bench.handmade_baseline(space, ((1, 3, 3), (1, 3, 6), (1, 3, 6)), 0.5)
    assert (arch, flops) == (((1, 3, 6), (1, 3, 6), (3, 3, 6)), 7)
    space.weights = (2, 2, 2)
    # searched: 2 + 1 (k5) + 2 + 2 = 7; k3e6 FLOPs are even: 6 (1, 1, 1) below
    # and 8 (1, 1, 2) above are equally close -> (1, 1, 1)
    arch, flops = bench.handmade_baseline(space, ((1, 5, 6), (1, 3, 6), (1, 3, 6)), 0.5)
    assert (arch, flops) == (((1, 3, 6), (1, 3, 6), (1, 3, 6)), 6)


def test_baseline_never_returns_the_searched_arch():
    space = DepthSpace()
    searched = ((2, 3, 6), (2, 3, 6), (2, 3, 6))  # itself a k3e6 setting: 222
    arch, flops = bench.handmade_baseline(space, searched, 0.05)
    assert arch != searched
    assert flops in (221, 223)
    assert arch == ((2, 3, 6), (2, 3, 6), (1, 3, 6))  # 221: the smaller depths


def test_baseline_outside_the_tolerance_is_refused():
    space = DepthSpace()
    with pytest.raises(ValueError, match=r'away from the searched.*tolerance 1\.0%'):
        # 216 vs 213: 1.4 % away
        bench.handmade_baseline(space, ((2, 5, 6), (1, 3, 3), (3, 3, 6)), 0.01)


def test_baseline_on_the_real_space_matches_the_flops():
    space = MobileNetSpace()
    searched = space.from_str('d2k5e3-d1k5e6-d2k3e3-d1k3e6')
    arch, flops = bench.handmade_baseline(space, searched, 0.03)
    assert all(k == 3 and e == 6 for _, k, e in arch)
    assert flops == space.flops(arch)
    assert abs(flops - space.flops(searched)) <= 0.03 * space.flops(searched)


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--tolerance', '0'], 'tolerance'),
        (['--tolerance', '1.5'], 'tolerance'),
        (['--epochs', '1'], 'warm-up epoch'),
        (['--steps', '0'], 'steps'),
        (['--subset', '60000'], 'subset'),
        (['--seeds', '0', '0'], 'repeats'),
        (['--nets', 'resnet'], 'invalid choice'),
    ],
)
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_train_options():
    opts = bench.train_options(2, 3, 10000)
    assert opts[:4] == [
        'randomness.seed=2',
        'train_cfg.max_epochs=3',
        'param_scheduler.1.end=3',
        'train_cfg.val_interval=4',
    ]
    assert opts[-1] == 'train_dataloader.dataset.subset_size=10000'
    assert not any('subset' in o for o in bench.train_options(0, 1, 0))


def test_net_config_sets_the_backbone(tmp_path):
    space = MobileNetSpace()
    template = osp.join(REPO, 'configs', 'nas', 'mmpretrain', 'mbv2_fmnist.py')
    arch = space.from_str('d3k3e6-d1k3e6-d2k3e6-d3k3e6')
    out = bench.net_config(template, space, arch, str(tmp_path / 'hand.py'))
    cfg = Config.fromfile(out)
    assert cfg.model.backbone.arch == 'd3k3e6-d1k3e6-d2k3e6-d3k3e6'
    assert cfg.model.head.in_channels == 64
    assert cfg.train_dataloader.dataset.type == 'FashionMNISTDataset'


def test_table_means_and_stds(tmp_path):
    args = bench.parse_args(['--seeds', '0', '1', '--epochs', '2', '--out', 'x.md'])
    record = dict(
        nets={
            'searched': dict(
                arch='d1k3e3-d1k3e3-d1k3e3-d1k3e3', flops=3.5e6, params=1e4
            ),
            'hand-made': dict(
                arch='d1k3e6-d1k3e6-d1k3e6-d1k3e6', flops=3.6e6, params=2e4
            ),
        },
        runs=[
            dict(net='searched', seed=0, top1=90.0),
            dict(net='hand-made', seed=0, top1=89.0),
            dict(net='searched', seed=1, top1=92.0),
            dict(net='hand-made', seed=1, top1=89.0),
        ],
    )
    text = bench.table(record, args)
    # mean 91, sample std sqrt(2) = 1.41; hand-made 89 +- 0
    assert '| 91.00 ± 1.41 | 0: 90.00, 1: 92.00 |' in text
    assert '| 89.00 ± 0.00 | 0: 89.00, 1: 89.00 |' in text
    assert 'Searched minus hand-made: +2.00 points' in text
    assert '--seeds 0 1 --epochs 2 --out x.md' in text
    assert '--max-flops 10e6 ' in text
    assert 'hand-made network: +2.86% of the searched' in text  # 3.6 / 3.5 - 1


def test_other_settings_in_the_raw_file_are_refused(tmp_path):
    out = tmp_path / 'page.md'
    (tmp_path / 'page.json').write_text(
        json.dumps(dict(settings=dict(epochs=9), nets={}, runs=[]))
    )
    with pytest.raises(SystemExit, match='holds runs of'):
        bench.main(['--out', str(out), '--work-dir', str(tmp_path / 'w')])
