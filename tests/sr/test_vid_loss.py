"""PISR's variance-aware distillation loss (VIDLoss) against hand values and
torch.distributions, and its gradients against finite differences."""

import math

import pytest
import torch

from mmcompress.distill.losses import VIDLoss


def identity_heads(loss, raw_scale=1.0):
    """mu = x (identity convs, PReLU slope 1) and Softplus output ``raw_scale``
    everywhere (zero weights, bias softplus^-1(raw_scale))."""
    loss.double()
    channels = loss.channels
    eye = torch.eye(channels, dtype=torch.float64)[:, :, None, None]
    with torch.no_grad():
        for head in (loss.mean_head, loss.var_head[0]):
            head[1].weight.fill_(1.0)
        for conv in (loss.mean_head[0], loss.mean_head[2]):
            conv.weight.copy_(eye)
            conv.bias.zero_()
        for conv in (loss.var_head[0][0], loss.var_head[0][2]):
            conv.weight.zero_()
            conv.bias.zero_()
        loss.var_head[0][2].bias.fill_(math.log(math.expm1(raw_scale)))
    return loss


STUDENT = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2, 1, 1)
TEACHER = torch.tensor([0.5, 0.0], dtype=torch.float64).view(1, 2, 1, 1)


def test_laplace_matches_hand_value():
    """b = 0.1 * 1 + 1e-8; errors 0.5 and 1; C = 2:
    log(2 pi) + log(2 b) + mean(|d|) / b = log(2 pi) + log(0.2) + 7.5."""
    loss = identity_heads(VIDLoss(channels=2))
    b = 0.1 + 1e-8
    expected = math.log(2 * math.pi) + math.log(2 * b) + 0.75 / b
    assert loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-9)


def test_gaussian_matches_hand_value():
    """v = 0.001 + 1e-8; squared errors 0.25 and 1:
    log(2 pi) + log(v) / 2 + mean(d^2) / (2 v) = log(2 pi) + log(1e-3)/2 + 312.5."""
    loss = identity_heads(VIDLoss(channels=2, pdf='gaussian'))
    v = 1e-3 + 1e-8
    expected = math.log(2 * math.pi) + math.log(v) / 2 + 0.625 / (2 * v)
    assert loss(STUDENT, TEACHER).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize('pdf', ['laplace', 'gaussian'])
def test_matches_torch_distributions(pdf):
    """Random heads: the loss is C log(2 pi)/2 + mean(-log p(t)) with p the
    Laplace(mu, b) (Gaussian: -log p - log(2 pi)/2 with variance v)."""
    torch.manual_seed(0)
    loss = VIDLoss(channels=3, pdf=pdf).double()
    student = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    teacher = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    mean = loss.mean_head(student)
    raw = loss.var_head(student)
    if pdf == 'laplace':
        dist = torch.distributions.Laplace(mean, 0.1 * raw + 1e-8)
        nll = -dist.log_prob(teacher)
    else:
        dist = torch.distributions.Normal(mean, (1e-3 * raw + 1e-8).sqrt())
        nll = -dist.log_prob(teacher) - math.log(2 * math.pi) / 2
    expected = 3 * math.log(2 * math.pi) / 2 + nll.mean()
    assert loss(student, teacher).item() == pytest.approx(expected.item(), rel=1e-10)


@pytest.mark.parametrize('pdf', ['laplace', 'gaussian'])
def test_gradients_match_finite_differences(pdf):
    torch.manual_seed(1)
    loss = VIDLoss(channels=2, pdf=pdf).double()
    student = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: loss(s, teacher), (student,))


def test_loss_weight_and_teacher_detached():
    loss = identity_heads(VIDLoss(channels=2, loss_weight=1e-6))
    teacher = TEACHER.clone().requires_grad_(True)
    student = STUDENT.clone().requires_grad_(True)
    value = loss(student, teacher)
    value.backward()
    expected = 1e-6 * (math.log(2 * math.pi) + math.log(0.2) + 7.5)
    assert value.item() == pytest.approx(expected, rel=1e-6)  # eps: 1e-7 rel
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_wrong_pdf_is_refused():
    with pytest.raises(
        ValueError, match=r"pdf must be one of \('laplace', 'gaussian'\)"
    ):
        VIDLoss(channels=2, pdf='cauchy')
