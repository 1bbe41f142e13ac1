"""Unified Normalization mistakes: input layout, pad mask, options, folding."""

import pytest
import torch
from torch import nn

from mmcompress.models.norms import UN, fuse_un


def test_un_on_a_feature_map():
    """UN put where a (B, C, H, W) conv feature map arrives instead of tokens.

    Message: normalises the last dimension of tokens (B, N, 8)
    """
    with pytest.raises(
        ValueError,
        match=r'UN\(8\) normalises the last dimension of tokens \(B, N, 8\).*'
        r'got an input of shape \(2, 8, 4, 4\).*needs a BatchNorm',
    ):
        UN(8)(torch.randn(2, 8, 4, 4))


def test_un_channels_first_tokens():
    """UN fed tokens laid out (B, C, N) instead of (B, N, C).

    Message: got an input of shape (2, 8, 5)
    """
    with pytest.raises(ValueError, match=r'tokens \(B, N, 8\).*\(2, 8, 5\)'):
        UN(8)(torch.randn(2, 8, 5))


def test_un_pad_mask_of_the_wrong_shape():
    """A pad mask given per batch element instead of per token.

    Message: pad_mask must have the token shape (2, 5) (True = pad), got (2,)
    """
    with pytest.raises(
        ValueError,
        match=r'pad_mask must have the token shape'
        r' \(2, 5\) \(True = pad\), got \(2,\)',
    ):
        UN(3)(torch.randn(2, 5, 3), pad_mask=torch.zeros(2, dtype=torch.bool))


def test_un_unknown_counter():
    """A UN config with counter='iter' (not a known counter).

    Message: counter must be one of ('forward', 'step'), got 'iter'
    """
    with pytest.raises(
        ValueError,
        match=r"counter must be one of \('forward', "
        r"'step'\), got 'iter'",
    ):
        UN(3, counter='iter')


def test_un_zero_window():
    """A UN config with window_size=0.

    Message: UN: forward window must be >= 1 (a finite number), got 0.0
    """
    with pytest.raises(
        ValueError,
        match=r'UN: forward window must be >= 1 '
        r'\(a finite number\), got 0.0',
    ):
        UN(3, window_size=0)


def test_fuse_un_whose_neighbour_is_a_conv():
    """fuse_un on a UN whose output goes to a conv (no Linear to fold into).

    Message: cannot fold norm (UN): its output is used by ['permute']
    """

    class ToConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.conv = UN(4), nn.Conv1d(4, 4, 1)

        def forward(self, x):
            return self.conv(self.norm(x).permute(0, 2, 1))

    with pytest.raises(
        ValueError,
        match=r"cannot fold norm \(UN\): its output is used by \['permute'\] "
        r"\(nn.Linear inputs: none\).*on_unfoldable='affine'",
    ):
        fuse_un(ToConv(), (torch.randn(2, 3, 4),))


def test_fuse_un_after_quantization():
    """fuse_un called on a model whose Linear was already swapped for QAT.

    Message: not by exactly one nn.Linear called once
    """
    from mmcompress.quant import quantize_

    model = nn.Sequential(nn.Linear(4, 4), UN(4), nn.Linear(4, 2))
    quantize_(
        model,
        dict(w=dict(type='LSQQuantizer', bits=8), a=None, keep_output_float=False),
    )
    with pytest.raises(
        ValueError,
        match=r'cannot fold 1 \(UN\): its output is '
        r"used by \['linear'\].*not by exactly one nn.Linear",
    ):
        fuse_un(model, (torch.randn(2, 4),))


def test_fuse_un_model_without_un():
    """fuse_un called on a model that has LayerNorm, not UN.

    Message: fuse_un: Sequential has no UN or TokenBN layer to fold
    """
    model = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match='Sequential has no UN or TokenBN layer'):
        fuse_un(model, (torch.randn(2, 4),))
