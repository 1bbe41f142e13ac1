"""Bad input to the quantizers: non-finite hyper-parameters and initialization data."""

import math

import pytest
import torch

from mmcompress.quant import (
    DAQQuantizer,
    EWGSQuantizer,
    LSQQuantizer,
    N2UQActQuantizer,
    UniformSTEQuantizer,
)

NON_FINITE = [math.nan, math.inf]


@pytest.mark.parametrize('value', NON_FINITE + [0.0, 710.0])
def test_daq_temperature_out_of_range(value):
    """DAQ configured with temperature=nan, inf, 0 or one so large that e^T overflows.

    Message: DAQQuantizer: temperature must be in (0, 700] (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=r'DAQQuantizer: temperature must be '
        rf'in \(0, 700\] \(a finite number\), got {value}',
    ):
        DAQQuantizer(4, role='activation', temperature=value)


@pytest.mark.parametrize('value', NON_FINITE + [-1.0, 0.0, 1e-160])
def test_daq_sigma_out_of_range(value):
    """DAQ configured with sigma=nan, inf, <= 0 or so small that sigma^2 underflows.

    Message: DAQQuantizer: sigma must be >= 1e-150 (a finite number), got inf
    """
    with pytest.raises(
        ValueError,
        match=r'DAQQuantizer: sigma must be >= 1e-150 '
        rf'\(a finite number\), got {value}',
    ):
        DAQQuantizer(4, role='weight', sigma=value)


@pytest.mark.parametrize('value', NON_FINITE + [-0.1])
def test_ewgs_delta_not_finite(value):
    """EWGS configured with delta=nan, inf or a negative value.

    Message: EWGSQuantizer: delta must be >= 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=r'EWGSQuantizer: delta must be >= 0 '
        rf'\(a finite number\), got {value}',
    ):
        EWGSQuantizer(4, role='weight', delta=value)


@pytest.mark.parametrize('value', NON_FINITE + [0.0])
def test_n2uq_eps_not_positive_finite(value):
    """N2UQ activations configured with eps=nan, inf or 0 (zero-width segments).

    Message: N2UQActQuantizer: eps must be > 0 (a finite number), got nan
    """
    with pytest.raises(
        ValueError,
        match=r'N2UQActQuantizer: eps must be > 0 '
        rf'\(a finite number\), got {value}',
    ):
        N2UQActQuantizer(4, eps=value)


@pytest.mark.parametrize('value', NON_FINITE + [0.0])
def test_ema_momentum_out_of_range(value):
    """The EMA observer configured with momentum=nan, inf or 0.

    Message: UniformSTEQuantizer: momentum must be in (0, 1] (a finite number)
    """
    with pytest.raises(
        ValueError,
        match=r'UniformSTEQuantizer: momentum must be '
        rf'in \(0, 1\] \(a finite number\), got {value}',
    ):
        UniformSTEQuantizer(4, momentum=value)


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_first_batch_holds_nan_or_inf(bad):
    """The first training batch a quantizer sees holds NaN or inf.

    Message: LSQQuantizer: cannot initialize from a tensor holding NaN or inf
    """
    quantizer = LSQQuantizer(4)
    with pytest.raises(
        ValueError,
        match=r'LSQQuantizer: cannot initialize from '
        r'a tensor holding NaN or inf \(shape \(3,\)\)',
    ):
        quantizer(torch.tensor([0.5, bad, 1.0]))
    assert quantizer.initialized.item() == 0


def test_first_batch_range_overflows_float32():
    """The first batch's values are so large that the range exceeds float32 (3e38).

    Message: largest |x| = 3e+38) does not fit in float32
    """
    quantizer = EWGSQuantizer(4, role='activation')
    x = torch.tensor([-3e38, 3e38, -3e38, 3e38])
    with pytest.raises(
        ValueError,
        match=r'EWGSQuantizer: the range initialized '
        r'from this tensor \(shape \(4,\), largest \|x\| = '
        r'3e\+38\) does not fit in float32',
    ):
        quantizer(x)
    assert quantizer.initialized.item() == 0


@pytest.mark.parametrize('value', NON_FINITE)
def test_rprelu_init_slope_not_finite(value):
    """A binary network's RPReLU configured with init_slope=nan or inf.

    Message: RPReLU: init_slope must be a finite number, got nan
    """
    from mmcompress.quant.binary import RPReLU

    with pytest.raises(
        ValueError, match=rf'RPReLU: init_slope must be a finite number, got {value}'
    ):
        RPReLU(8, init_slope=value)


@pytest.mark.parametrize('value', NON_FINITE + [0.0])
def test_ewgs_hessian_hook_tol_not_positive_finite(value):
    """The EWGS Hessian delta hook configured with tol=nan, inf or 0.

    Message: EWGSHessianDeltaHook: tol must be > 0 (a finite number), got 0.0
    """
    from mmcompress.quant import EWGSHessianDeltaHook

    with pytest.raises(
        ValueError,
        match=rf'EWGSHessianDeltaHook: tol must be > 0 \(a finite number\), '
        rf'got {value}',
    ):
        EWGSHessianDeltaHook(tol=value)
