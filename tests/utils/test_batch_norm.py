"""recompute_bn_statistics: the exact statistics of the given batches, weights
and modes untouched, nothing lost on bad input."""

import pytest
import torch
from torch import nn

from mmcompress.utils.batch_norm import recompute_bn_statistics


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())


def test_statistics_are_the_average_over_the_batches():
    net = _net()
    batches = [torch.randn(4, 2, 6, 6) * (i + 1) + i for i in range(3)]
    weights = {
        k: v.clone()
        for k, v in net.state_dict().items()
        if 'running' not in k and 'num_batches' not in k
    }
    net.eval()
    assert recompute_bn_statistics(net, batches) == 3
    bn = net[1]
    features = [net[0](b) for b in batches]
    # cumulative average of the per-batch mean and unbiased variance
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1 and not net.training
    assert int(bn.num_batches_tracked) == 3
    for key, value in net.state_dict().items():
        if key in weights:
            torch.testing.assert_close(value, weights[key])


def test_custom_forward_and_training_mode_kept():
    net = _net()
    net.train()
    calls = []

    def forward(batch):
        calls.append(batch['x'].shape[0])
        return net(batch['x'])

    recompute_bn_statistics(net, [dict(x=torch.randn(5, 2, 6, 6))], forward)
    assert calls == [5] and net.training


def test_bad_inputs_keep_the_statistics():
    net = _net()
    net[1].running_mean.fill_(7.0)
    with pytest.raises(ValueError, match='got no batch: the running statistics are'):
        recompute_bn_statistics(net, [])
    assert float(net[1].running_mean[0]) == 7.0 and net[1].momentum == 0.1
    with pytest.raises(ValueError, match='Linear has no batch-norm layer'):
        recompute_bn_statistics(nn.Linear(2, 2), [torch.randn(1, 2)])
    free = nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False))
    with pytest.raises(ValueError, match='track_running_stats=False'):
        recompute_bn_statistics(free, [torch.randn(3, 2)])
