"""Weakly supervised detection (CASD) mistakes: views that do not match."""

import pytest
import torch

from mmcompress.models.wsod import CASDInputWiseLoss, CASDLayerWiseLoss


def test_casd_views_with_different_proposals():
    """CASD-IW fed RoI features of different proposal sets in two views.

    Message: the views hold different numbers of RoIs
    """
    with pytest.raises(ValueError, match='the views hold different numbers of RoIs'):
        CASDInputWiseLoss()(torch.rand(4, 2, 7, 7), torch.rand(5, 2, 7, 7))


def test_casd_flip_flags_do_not_match_views():
    """CASD configured with flip flags for 4 views but given 2.

    Message: got 2 views but flipped has 4 entries
    """
    loss = CASDLayerWiseLoss(flipped=[False, True, False, True])
    with pytest.raises(ValueError, match='got 2 views but flipped has 4 entries'):
        loss(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))


def test_casd_single_view():
    """CASD given one view only (no flips or scales to distil across).

    Message: needs at least 2 views, got 1
    """
    with pytest.raises(ValueError, match='needs at least 2 views, got 1'):
        CASDInputWiseLoss()(torch.rand(4, 2, 7, 7))
