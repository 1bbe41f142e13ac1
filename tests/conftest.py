"""Fixtures shared by every test folder."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture
def deterministic():
    """One intra-op thread and RNGs seeded with 0 (torch, numpy, random).

    For training tests with an accuracy or loss threshold: on CPU the result
    then depends neither on the machine's core count nor on the tests that ran
    before. The thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
    torch.set_num_threads(threads)
