"""NB201 space: arch strings both ways, the benchmark table, the network, FLOPs."""

import numpy as np
import torch

from mmcompress.nas import NB201Space, NB201Table, count_flops, count_params
from mmcompress.nas.space import format_nb201, parse_nb201

BEST = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|'  # noqa: E501


def test_parse_known_string():
    assert parse_nb201(BEST) == (3, 3, 3, 1, 2, 3)
    assert format_nb201((3, 3, 3, 1, 2, 3)) == BEST


def test_round_trip_all_archs():
    space = NB201Space()
    archs = space.all_archs()
    assert len(set(archs)) == 15625
    for arch in archs:
        assert space.from_str(space.to_str(arch)) == arch


def test_table_matches_benchmark_spot_checks():
    """Index 13714 has the best CIFAR-10 accuracy (94.3733); index 3558 93.63."""
    table = NB201Table()
    assert len(table) == 15625
    assert table.index(parse_nb201(BEST)) == 13714
    assert np.isclose(table.accuracy(parse_nb201(BEST)), 94.37333, atol=1e-4)
    assert np.isclose(table.acc[13714, 1], 73.09333, atol=1e-4)
    assert np.isclose(table.acc[13714, 2], 46.33333, atol=1e-4)
    assert np.isclose(table.acc[3558, 0], 93.63)
    # 13714 shares the top CIFAR-10 accuracy with index 6111
    assert table.acc[:, 0].max() == table.acc[13714, 0]


def test_flops_params_of_known_architectures():
    """By hand: per cell edge a 3x3 conv costs 9*16*16*32*32 MACs in every stage;
    stem 9*3*16*1024, each reduction block 3,670,016, classifier 64*10+10."""
    space = NB201Space()
    base = 9 * 3 * 16 * 1024 + 2 * 3_670_016 + 650
    conv3 = space.build((3,) * 6)
    assert count_flops(conv3) == base + 6 * 15 * 9 * 16 * 16 * 1024 == 220_119_690
    empty = space.build((0,) * 6)
    assert count_flops(empty) == base == 7_783_050
    # stem 432+32, reductions 14,464 + 57,600, last BN 128, classifier 650
    assert count_params(empty) == 73_306
    conv1 = space.build((2, 0, 0, 0, 0, 0))
    assert count_flops(conv1) == base + 15 * 16 * 16 * 1024
    # parameter-free ops (skip, pool, none) cost nothing
    assert count_flops(space.build((1, 4, 4, 1, 0, 4))) == base


def test_network_shapes_and_features():
    space = NB201Space()
    net = space.build(parse_nb201(BEST))
    feats = net.extract_features(torch.randn(2, 3, 32, 32))
    assert len(feats) == 18
    assert feats[0].shape == (2, 16, 32, 32) and feats[-1].shape == (2, 64, 8, 8)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_none_output_cell_gives_zeros():
    """A cell whose output node only receives `none` outputs exact zeros."""
    net = NB201Space().build((3, 3, 3, 0, 0, 0))
    feats = net.extract_features(torch.randn(2, 3, 32, 32))
    assert torch.count_nonzero(feats[1]) == 0


def test_sample_mutate_encode():
    space = NB201Space()
    rng = np.random.default_rng(0)
    arch = space.sample(rng)
    child = space.mutate(arch, rng)
    assert sum(a != b for a, b in zip(arch, child)) == 1
    enc = space.encode((0, 1, 2, 3, 4, 0))
    assert enc.shape == (30,) and enc.sum() == 6
    assert enc.reshape(6, 5)[4, 4] == 1


def test_closed_form_flops_matches_counting():
    space = NB201Space()
    for arch in [(3,) * 6, (0,) * 6, (3, 3, 3, 1, 2, 3), (2, 4, 1, 3, 0, 2)]:
        assert space.flops(arch) == count_flops(space.build(arch))


def test_mobilenet_space_round_trip_flops_and_features():
    from mmcompress.nas import MobileNetSpace

    space = MobileNetSpace()
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.from_str(space.to_str(arch)) == arch
        child = space.mutate(arch, rng)
        assert sum(a != b for s, t in zip(arch, child) for a, b in zip(s, t)) == 1
    arch = space.from_str('d1k3e3-d1k3e3-d1k3e3-d1k3e3')
    net = space.build(arch)
    # by hand at 28x28: stem 9*1*16*784; per block expand + depthwise + project
    hand = 9 * 16 * 784
    for c_in, c_out, in_side, side in (
        (16, 16, 28, 28),
        (16, 24, 28, 14),
        (24, 32, 14, 7),
        (32, 64, 7, 7),
    ):
        h = 3 * c_in
        hand += c_in * h * in_side**2 + 9 * h * side**2 + h * c_out * side**2
    assert count_flops(net, (1, 28, 28)) == hand + 64 * 10 + 10
    assert space.flops(arch) == space.min_flops() == count_flops(net, (1, 28, 28))
    feats = net.extract_features(torch.randn(2, 1, 28, 28))
    assert len(feats) == 5 and feats[-1].shape == (2, 64, 7, 7)
    assert space.encode(arch).shape == (12,)
