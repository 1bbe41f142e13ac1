"""Contract of every registered loss: a finite scalar for a batch and for a
batch of 1, gradients that are finite and reach the student input (and the
loss's own parameters), none into the teacher, ``loss_weight`` scaling, and a
clear error for a wrong input shape.

The table ``CASES`` must hold one entry per loss registered by mmcompress:
``test_every_registered_loss_has_a_case`` fails for a new loss without one.
"""

from dataclasses import dataclass
from typing import Callable, Tuple

import pytest
import torch

from mmcompress.registry import MODELS

from .registered import missing_and_stale, registered_losses


def randn(*shape, seed):
    return torch.randn(
        *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def labels(n, classes=10, seed=0):
    return torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed))


def logit_pair(n):
    return (randn(n, 10, seed=1), randn(n, 10, seed=2)), {}


def map_pair(n, channels_s=4, channels_t=4):
    return (randn(n, channels_s, 5, 5, seed=3), randn(n, channels_t, 5, 5, seed=4)), {}


def boxes(n, seed):
    corner = randn(n, 2, seed=seed).abs() * 4
    size = randn(n, 2, seed=seed + 1).abs() * 4 + 1
    return torch.cat([corner, corner + size], dim=1)


def soft_targets(n, seed):
    mix = (
        torch.rand(
            n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )[:, None]
        * 0.6
        + 0.2
    )
    onehot = torch.nn.functional.one_hot(labels(n, seed=seed), 10)
    other = torch.nn.functional.one_hot(labels(n, seed=seed + 1), 10)
    return mix * onehot + (1 - mix) * other


@dataclass
class Case:
    """How to call one loss.

    Args:
        cfg (dict): Build config (``type`` and arguments).
        inputs (callable): ``n -> (args, kwargs)`` for a batch of ``n``.
        grad (tuple[int]): Positions in ``args`` that must receive gradients.
        detached (tuple[int]): Positions that must not (the teacher).
        bad (callable): ``() -> (args, kwargs)`` with a wrong shape.
        error (str): Regex the error for ``bad`` must match.
    """

    cfg: dict
    inputs: Callable
    bad: Callable
    error: str
    grad: Tuple[int, ...] = (0,)
    detached: Tuple[int, ...] = (1,)
    exc: type = ValueError


WRONG_CLASSES = lambda: ((randn(2, 10, seed=1), randn(2, 7, seed=2)), {})  # noqa
FLAT_MAPS = lambda: ((randn(2, 4, seed=1), randn(2, 4, seed=2)), {})  # noqa
MISMATCHED_MAPS = lambda: map_pair(2, 4, 6)  # noqa

CASES = {
    'VanillaKDLoss': Case(
        dict(type='VanillaKDLoss', tau=4.0),
        logit_pair,
        WRONG_CLASSES,
        r'\(2, 10\).*\(2, 7\)',
    ),
    'DecoupledKDLoss': Case(
        dict(type='DecoupledKDLoss'),
        lambda n: (logit_pair(n)[0], dict(gt_labels=labels(n))),
        lambda: (
            (randn(2, 10, seed=1), randn(2, 10, seed=2)),
            dict(gt_labels=labels(3)),
        ),
        r'gt_labels must have shape \(2,\), got \(3,\)',
    ),
    'DISTLoss': Case(
        dict(type='DISTLoss'), logit_pair, WRONG_CLASSES, r'\(2, 10\).*\(2, 7\)'
    ),
    'FeatureMSELoss': Case(
        dict(type='FeatureMSELoss'),
        map_pair,
        MISMATCHED_MAPS,
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\)',
    ),
    'ATLoss': Case(
        dict(type='ATLoss'), map_pair, FLAT_MAPS, r'N x C x H x W.*\(2, 4\)'
    ),
    'PKDLoss': Case(
        dict(type='PKDLoss'),
        map_pair,
        MISMATCHED_MAPS,
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\)',
    ),
    'ICKDLoss': Case(
        dict(type='ICKDLoss'),
        map_pair,
        MISMATCHED_MAPS,
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\)',
    ),
    'ChannelWiseDivergenceLoss': Case(
        dict(type='ChannelWiseDivergenceLoss', tau=2.0),
        map_pair,
        MISMATCHED_MAPS,
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\)',
    ),
    'DWPoseKDLoss': Case(
        dict(type='DWPoseKDLoss'),
        map_pair,
        MISMATCHED_MAPS,
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\)',
    ),
    'VIDLoss': Case(
        dict(type='VIDLoss', channels=4),
        map_pair,
        lambda: map_pair(2, 4, 6),
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\).*channels=4',
    ),
    'FeatureL1Loss': Case(
        dict(type='FeatureL1Loss'),
        map_pair,
        lambda: map_pair(2, 4, 6),
        r'\(2, 4, 5, 5\).*\(2, 6, 5, 5\)',
    ),
    'CASDInputWiseLoss': Case(
        dict(type='CASDInputWiseLoss'),
        lambda n: (tuple(randn(n, 3, 7, 7, seed=30 + v) for v in range(4)), {}),
        lambda: ((randn(2, 3, 7, 7, seed=30), randn(3, 3, 7, 7, seed=31)), {}),
        r'different numbers of RoIs \[\(2, 3, 7, 7\), \(3, 3, 7, 7\)\]',
        grad=(0, 1, 2, 3),
        detached=(),
    ),
    'CASDLayerWiseLoss': Case(
        dict(type='CASDLayerWiseLoss'),
        lambda n: (
            tuple(
                randn(n, 3, *size, seed=34 + v)
                for v, size in enumerate([(6, 8), (6, 8), (9, 12), (9, 12)])
            ),
            {},
        ),
        lambda: ((randn(2, 3, 6, seed=30), randn(2, 3, 6, seed=31)), {}),
        r'every view must be a N x C x H x W tensor',
        grad=(0, 1, 2, 3),
        detached=(),
    ),
    'MGDLoss': Case(
        dict(type='MGDLoss', teacher_channels=6, student_channels=4),
        lambda n: map_pair(n, 4, 6),
        lambda: map_pair(2, 3, 6),
        r'channels \(4, 6\).*\(2, 3, 5, 5\)',
    ),
    'BCKDClassificationLoss': Case(
        dict(type='BCKDClassificationLoss'),
        lambda n: ((randn(n, 3, seed=5), randn(n, 3, seed=6)), {}),
        lambda: ((randn(4, 3, seed=5), randn(4, 2, seed=6)), {}),
        r'\(4, 3\).*\(4, 2\)',
    ),
    'BCKDLocalizationLoss': Case(
        dict(type='BCKDLocalizationLoss'),
        lambda n: (
            (boxes(n, 7), boxes(n, 9)),
            dict(cls_scores_S=randn(n, 3, seed=11), cls_scores_T=randn(n, 3, seed=12)),
        ),
        lambda: (
            (randn(4, 5, seed=1), randn(4, 5, seed=2)),
            dict(cls_scores_S=randn(4, 3, seed=11), cls_scores_T=randn(4, 3, seed=12)),
        ),
        r'boxes must be A x 4',
    ),
    'DenseSoftmaxKDLoss': Case(
        dict(type='DenseSoftmaxKDLoss'),
        lambda n: ((randn(n, 5, seed=13), randn(n, 5, seed=14)), {}),
        lambda: ((randn(4, 5, seed=13), randn(4, 3, seed=14)), {}),
        r'\(4, 5\).*\(4, 3\)',
    ),
    'SoftmaxFocalLoss': Case(
        dict(type='SoftmaxFocalLoss'),
        lambda n: ((randn(n, 10, seed=15), labels(n)), {}),
        lambda: ((randn(2, 10, seed=15), labels(3)), {}),
        r'got 3 labels for 2 rows of scores \(2, 10\)',
        detached=(),
    ),
    'MarginLogitSmoothLoss': Case(
        dict(type='MarginLogitSmoothLoss'),
        lambda n: ((randn(n, 10, seed=16), labels(n)), {}),
        lambda: ((randn(2, 10, seed=16), labels(3)), {}),
        r'got 3 labels for 2 rows of scores \(2, 10\)',
        detached=(),
    ),
    'MixupMarginRankingLoss': Case(
        dict(type='MixupMarginRankingLoss'),
        lambda n: (
            (randn(n, 10, seed=17), randn(n, 10, seed=18), soft_targets(n, 19)),
            {},
        ),
        lambda: (
            (randn(2, 10, seed=17), randn(3, 10, seed=18), soft_targets(3, 19)),
            {},
        ),
        r'M whole copies of the raw batch',
        grad=(0, 1),
        detached=(),
    ),
    'MixupNDCGLoss': Case(
        dict(type='MixupNDCGLoss'),
        lambda n: (
            (randn(n, 10, seed=17), randn(n, 10, seed=18), soft_targets(n, 19)),
            {},
        ),
        lambda: (
            (randn(2, 10, seed=17), randn(2, 10, seed=18), soft_targets(2, 19)[:, :7]),
            {},
        ),
        r'mixed targets \(2, 7\) must match mixed logits \(2, 10\)',
        grad=(0, 1),
        detached=(),
    ),
}

NAMES = sorted(CASES)

# Losses whose inputs are whole models, not tensors: their contract is tested
# where those models are built (the value names the test).
TESTED_WITH_MODELS = {
    'DenseHeadDistillLoss': 'tests/distill/test_dense_detection.py (student and '
    'teacher mmdet detectors; composes BCKDClassificationLoss / BCKDLocalizationLoss, '
    'which have cases here)',
}


def test_every_registered_loss_has_a_case():
    registered = registered_losses()
    covered = {**CASES, **TESTED_WITH_MODELS}
    assert not set(CASES) & set(TESTED_WITH_MODELS)
    assert len(registered) == len(covered), missing_and_stale(registered, covered)
    assert not missing_and_stale(registered, covered)


def build(name, **overrides):
    torch.manual_seed(0)  # MGD's generator weights
    return MODELS.build({**CASES[name].cfg, **overrides}).double()


def call(loss, args, kwargs):
    torch.manual_seed(0)  # MGD draws a random mask
    return loss(*args, **kwargs)


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('batch', [4, 1])
def test_scalar_with_gradients_to_student_only(name, batch):
    case, loss = CASES[name], build(name)
    args, kwargs = case.inputs(batch)
    args = tuple(
        a.clone().requires_grad_(i in case.grad + case.detached)
        for i, a in enumerate(args)
    )
    value = call(loss, args, kwargs)
    assert value.shape == () and torch.isfinite(value), value
    value.backward()
    for i in case.grad:
        grad = args[i].grad
        assert grad is not None and torch.isfinite(grad).all(), (i, grad)
        assert grad.abs().sum() > 0, f'no gradient reaches input {i}'
    for i in case.detached:
        assert args[i].grad is None, f'input {i} (teacher) got a gradient'
    for pname, param in loss.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, f'no gradient reaches {pname}'


@pytest.mark.parametrize('name', NAMES)
def test_loss_weight_scales_the_loss(name):
    args, kwargs = CASES[name].inputs(4)
    one = call(build(name, loss_weight=1.0), args, kwargs)
    three = call(build(name, loss_weight=3.0), args, kwargs)
    assert three.item() == pytest.approx(3 * one.item(), rel=1e-9)
    assert one.item() != 0


@pytest.mark.parametrize('name', NAMES)
def test_wrong_shape_raises_a_clear_error(name):
    case = CASES[name]
    args, kwargs = case.bad()
    with pytest.raises(case.exc, match=case.error):
        call(build(name), args, kwargs)
