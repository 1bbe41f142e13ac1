"""Fixtures shared by the quantization tests."""

import pytest
import torch
from torch import nn


@pytest.fixture
def qat_steps():
    """A function training a classifier (``mode='tensor'`` logits) with
    cross-entropy and SGD for one step per batch, so quantizers initialise
    and BN statistics move, then putting it in eval mode."""

    def train(
        model: nn.Module, batches, labels: torch.Tensor, lr: float = 0.01
    ) -> None:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for batch in batches:
            loss = nn.functional.cross_entropy(model(batch, mode='tensor'), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()

    return train
