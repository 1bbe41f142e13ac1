"""Bad input to the fused quantizer option (``fused=True``)."""

import pytest

from mmcompress.quant import (
    DAQQuantizer,
    EWGSQuantizer,
    LSQQuantizer,
    N2UQActQuantizer,
)


def test_lsq_fused_given_as_a_string():
    """LSQ configured with fused='yes' (a string) instead of True.

    Message: LSQQuantizer: fused must be True (fused CPU kernel) or False (eager)
    """
    with pytest.raises(
        TypeError,
        match=r'LSQQuantizer: fused must be True \(fused CPU kernel\) or False '
        r"\(eager\), got 'yes' \(str\)",
    ):
        LSQQuantizer(4, fused='yes')


def test_ewgs_fused_given_as_a_number():
    """EWGS configured with fused=1 instead of True.

    Message: EWGSQuantizer: fused must be True (fused CPU kernel) or False
    """
    with pytest.raises(
        TypeError,
        match=r'EWGSQuantizer: fused must be True \(fused CPU kernel\) or False '
        r'\(eager\), got 1 \(int\)',
    ):
        EWGSQuantizer(4, 'weight', fused=1)


def test_daq_fused_given_as_a_string():
    """DAQ configured with fused='true' (a string) instead of True.

    Message: DAQQuantizer: fused must be True (fused CPU kernel) or False
    """
    with pytest.raises(
        TypeError,
        match=r'DAQQuantizer: fused must be True \(fused CPU kernel\) or False '
        r"\(eager\), got 'true' \(str\)",
    ):
        DAQQuantizer(4, 'activation', fused='true')


def test_n2uq_fused_given_as_none():
    """N2UQ activations configured with fused=None instead of False.

    Message: N2UQActQuantizer: fused must be True (fused CPU kernel) or False
    """
    with pytest.raises(
        TypeError,
        match=r'N2UQActQuantizer: fused must be True \(fused CPU kernel\) or '
        r'False \(eager\), got None \(NoneType\)',
    ):
        N2UQActQuantizer(4, fused=None)
