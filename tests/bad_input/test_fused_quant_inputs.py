"""Bad input to the fused quantizer option (``fused=True``)."""

import pytest

from mmcompress.quant import EWGSQuantizer, LSQQuantizer


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
