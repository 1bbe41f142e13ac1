"""benchmarks/casd_grad_norms.py: per-term gradient norms against hand values
(the OICR losses summed, each CASD term on its own; backbone vs all
parameters)."""

import pytest
import torch

from ..e2e.runs import load_script

casd_grad_norms = load_script('benchmarks', 'casd_grad_norms.py')


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(1, 1, bias=False)
        self.head = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.backbone.weight.fill_(2.0)
            self.head.weight.fill_(3.0)


def test_term_gradients_against_hand_values():
    model = _Toy()
    x = torch.ones(1, 1)
    feat = model.backbone(x)  # 2 w_b x, w_b = 2
    out = model.head(feat)  # w_h w_b x = 6
    losses = dict(
        loss_midn=out.sum(),  # d/dw_b = w_h = 3, d/dw_h = w_b = 2
        loss_refine1=2 * out.sum(),  # twice that
        loss_casd_iw=0.5 * feat.pow(2).sum(),  # d/dw_b = w_b = 2
    )
    rows = casd_grad_norms.term_gradients(model, losses)
    assert rows['oicr'] == pytest.approx((18.0, 9.0, (81 + 36) ** 0.5))
    assert rows['loss_casd_iw'] == pytest.approx((2.0, 2.0, 2.0))
