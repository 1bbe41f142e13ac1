"""Non-finite hyper-parameters outside the distillation losses and quantizers:
calibration losses, temperature scaling, RankMixup and the ReActNet backbone."""

import math

import pytest
import torch

from mmcompress.calibrate import (
    MarginLogitSmoothLoss,
    MixupMarginRankingLoss,
    MixupNDCGLoss,
    SoftmaxFocalLoss,
    TemperatureScalingHook,
    fit_temperature,
    mix_inputs,
)
from mmcompress.models.backbones.reactnet import ReActNet


@pytest.mark.parametrize(
    'build,name,bound',
    [
        (lambda v: SoftmaxFocalLoss(gamma=v), 'gamma', '>= 0'),
        (lambda v: SoftmaxFocalLoss(loss_weight=v), 'loss_weight', '>= 0'),
        (lambda v: MarginLogitSmoothLoss(margin=v), 'margin', '>= 0'),
        (lambda v: MarginLogitSmoothLoss(alpha=v), 'alpha', '>= 0'),
        (lambda v: MixupMarginRankingLoss(loss_weight=v), 'loss_weight', '>= 0'),
        (lambda v: MixupNDCGLoss(loss_weight=v), 'loss_weight', '>= 0'),
    ],
)
@pytest.mark.parametrize('value', [math.nan, math.inf])
def test_calibration_loss_with_non_finite_parameter(build, name, bound, value):
    """A calibration loss given gamma, margin, alpha or loss_weight = nan or inf.

    Message: gamma must be >= 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=rf'{name} must be {bound} \(a finite '
        rf'number\), got {value}',
    ):
        build(value)


def test_ranking_margin_not_finite():
    """The RankMixup ranking loss configured with margin=nan.

    Message: margin must be a finite number, got nan
    """
    with pytest.raises(ValueError, match='margin must be a finite number, got nan'):
        MixupMarginRankingLoss(margin=math.nan)


@pytest.mark.parametrize('value', [math.nan, math.inf, 0.0])
def test_mixup_alpha_not_positive_finite(value):
    """RankMixup's Beta(alpha, alpha) configured with alpha=nan, inf or 0.

    Message: mixup alpha must be > 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=rf'mixup alpha must be > 0 \(a finite '
        rf'number\), got {value}',
    ):
        mix_inputs(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), 3, 2, value)


@pytest.mark.parametrize('value', [math.nan, math.inf])
def test_temperature_not_positive_finite(value):
    """Temperature scaling given T = nan or inf (a fixed hook T or the fit's start).

    Message: temperature must be > 0 (a finite number), got inf
    """
    with pytest.raises(
        ValueError,
        match=rf'temperature must be > 0 \(a finite '
        rf'number\), got {value}',
    ):
        TemperatureScalingHook(temperature=value)
    logits = torch.randn(200, 3)
    with pytest.raises(
        ValueError,
        match=rf'initial_temperature must be > 0 '
        rf'\(a finite number\), got {value}',
    ):
        fit_temperature(logits, logits.argmax(1), initial_temperature=value)


@pytest.mark.parametrize('value', [math.nan, math.inf, 0.0])
def test_reactnet_widen_factor_not_positive_finite(value):
    """ReActNet configured with widen_factor=nan, inf or 0.

    Message: ReActNet: widen_factor must be > 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=r'ReActNet: widen_factor must be > 0 '
        rf'\(a finite number\), got {value}',
    ):
        ReActNet(widen_factor=value)
