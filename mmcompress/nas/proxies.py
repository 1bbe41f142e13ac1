"""Training-free proxies: AZ-NAS (expressivity, progressivity, trainability) and the
FLOPs, Synflow, NASWOT and ZiCo baselines, all scoring a freshly built network.

AZ-NAS follows the official NB201 scorer (cvlab-yonsei/AZ-NAS,
``NB201/ZeroShotProxy/compute_az_nas_score.py``): Kaiming-normal fan-in init, train
mode (BN batch statistics), one batch of N(0, 1) inputs, features = stem output and
every cell output; a NaN score becomes ``-inf``. Every proxy function takes a network
with ``extract_features(x)`` / ``forward(x) -> logits`` and returns a dict of floats,
higher = better.
"""

import copy
import math
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def kaiming_init(model: nn.Module) -> nn.Module:
    """Re-initialise as the official scorer: Kaiming-normal fan-in (ReLU) for
    Conv2d / Linear weights, zero biases, BN / GN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def feature_entropy(feat: torch.Tensor) -> float:
    """Entropy of the normalised eigenvalue spectrum of a feature map's covariance.

    ``feat`` (B, C, H, W) is read as B*H*W samples of C channels, centred; with
    ``s`` the eigenvalues of the covariance and ``p = s / sum(s)`` the result is
    ``-sum(p * log(p + 1e-8))``.
    """
    b, c, h, w = feat.shape
    x = feat.detach().permute(0, 2, 3, 1).reshape(b * h * w, c)
    x = x - x.mean(dim=0, keepdim=True)
    sigma = x.t() @ x / x.shape[0]
    s = torch.linalg.eigvalsh(sigma)
    p = s / s.sum()
    return float((-p * torch.log(p + 1e-8)).sum())


def jacobian_score(g_in: torch.Tensor, g_out: torch.Tensor) -> float:
    """Trainability of one block from the input gradient of a random output
    gradient: ``-sigma - 1 / (sigma + 1e-6) + 2`` with ``sigma`` the largest
    singular value of ``g_in^T g_out / (B*Ho*Wo)``; ``-inf`` for an identity block
    (``g_in == g_out``). A stride change is undone by PixelUnshuffle on ``g_in``.
    """
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return -math.inf
    bo, co, ho, wo = g_out.shape
    if g_in.shape[2:] != g_out.shape[2:]:
        if g_in.shape[2] % ho or g_in.shape[3] % wo:
            raise ValueError(
                f'trainability needs feature sizes that divide: input '
                f'{tuple(g_in.shape[2:])} -> output {(ho, wo)}; use an input '
                'resolution that every stride divides'
            )
        g_in = F.pixel_unshuffle(g_in, g_in.shape[2] // ho)
    ci = g_in.shape[1]
    a = g_in.permute(0, 2, 3, 1).reshape(-1, ci)
    b = g_out.permute(0, 2, 3, 1).reshape(-1, co)
    sigma = float(torch.linalg.svdvals(a.t() @ b / (bo * ho * wo)).max())
    return -sigma - 1.0 / (sigma + 1e-6) + 2.0


def rademacher_like(x: torch.Tensor) -> torch.Tensor:
    """Random +-1 of ``x``'s shape, equal to the official
    ``(torch.bernoulli(torch.full_like(x, 0.5)) - 0.5) * 2``.

    On the CPU generator both draw one uniform per element (24 bits of one 32-bit
    Mersenne-Twister output for float32, 53 of a 64-bit one for float64) and set
    the element when it is below 0.5, so ``rand < 0.5`` yields the same values
    and leaves the generator in the same state, several times faster than
    ``bernoulli`` with a tensor of probabilities
    (``tests/nas/test_scoring_exact.py`` checks the equality).

    Args:
        x (torch.Tensor): Shape, dtype and device template.

    Returns:
        torch.Tensor: +1 where the uniform draw is below 0.5, -1 elsewhere.
    """
    return torch.rand_like(x).lt_(0.5).to(x.dtype).mul_(2).sub_(1)


def _finite_or_neginf(value: float) -> float:
    return -math.inf if math.isnan(value) else float(value)


def az_nas(model: nn.Module, batch_size: int = 64, resolution: int = 32) -> Dict:
    """The three AZ-NAS proxies of ``model`` (complexity = FLOPs is separate).

    Args:
        model (nn.Module): Network with ``extract_features``; re-initialised here.
        batch_size (int): Random-input batch. Defaults to 64.
        resolution (int): Input side. Defaults to 32.

    Returns:
        dict: ``expressivity`` (sum of feature entropies), ``progressivity`` (least
        entropy increase between consecutive features), ``trainability`` (mean
        Jacobian score over consecutive features); NaN becomes ``-inf``.
    """
    kaiming_init(model).train()
    in_ch = _in_channels(model)
    feats = model.extract_features(
        torch.randn(batch_size, in_ch, resolution, resolution)
    )
    ent = np.array([feature_entropy(f) for f in feats])
    scores = []
    for i in reversed(range(1, len(feats))):
        g_out = rademacher_like(feats[i])
        # one cell's graph per call, freed after it (retain_graph=False, as official)
        g_in = torch.autograd.grad(feats[i], feats[i - 1], g_out)[0]
        scores.append(jacobian_score(g_in, g_out))
    return dict(
        expressivity=_finite_or_neginf(float(np.sum(ent))),
        progressivity=_finite_or_neginf(float(np.min(ent[1:] - ent[:-1]))),
        trainability=_finite_or_neginf(float(np.mean(scores))),
    )


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError(f'{type(model).__name__} has no Conv2d to read input channels')


def synflow(model: nn.Module, resolution: int = 32) -> Dict:
    """Synflow without BN (official NB201 variant): Kaiming init, absolute weights,
    float64, one all-ones input; sum of ``|w * dL/dw|`` over Conv / Linear weights
    with ``L`` the sum of the logits."""
    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.forward = _bypass
    kaiming_init(net).double().train()
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.zero_grad()
    out = net(torch.ones(1, _in_channels(net), resolution, resolution).double())
    out.sum().backward()
    total = 0.0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
            total += float((m.weight.detach() * m.weight.grad).abs().sum())
    return dict(synflow=_finite_or_neginf(total))


def _bypass(x: torch.Tensor) -> torch.Tensor:
    return x


def naswot(model: nn.Module, batch_size: int = 64, resolution: int = 32) -> Dict:
    """NASWOT: log-determinant of the Hamming-similarity kernel of ReLU codes,
    ``K = sum_relu c c^T + (1-c)(1-c)^T`` over samples (Kaiming init, random
    Gaussian inputs as for AZ-NAS)."""
    kaiming_init(model).train()
    kernel = torch.zeros(batch_size, batch_size, dtype=torch.float64)

    def hook(_mod, inp, _out):
        codes = (inp[0].detach().reshape(batch_size, -1) > 0).double()
        kernel.add_(codes @ codes.t() + (1 - codes) @ (1 - codes).t())

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)
    ]
    try:
        with torch.no_grad():
            model(torch.randn(batch_size, _in_channels(model), resolution, resolution))
    finally:
        for h in handles:
            h.remove()
    return dict(naswot=_finite_or_neginf(float(torch.linalg.slogdet(kernel)[1])))


def zico(
    model: nn.Module, batch_size: int = 64, resolution: int = 32, splits: int = 2
) -> Dict:
    """ZiCo: per Conv / Linear layer, ``log sum(mean|g| / std(g))`` over the
    gradients of ``splits`` mini-batches (random Gaussian inputs, random labels),
    summed over layers; layers with no non-zero std are skipped."""
    kaiming_init(model).train()
    x = torch.randn(batch_size, _in_channels(model), resolution, resolution)
    grads: Dict[str, List[np.ndarray]] = {}
    for chunk in x.chunk(splits):
        model.zero_grad()
        logits = model(chunk)
        y = torch.randint(0, logits.shape[1], (chunk.shape[0],))
        F.cross_entropy(logits, y).backward()
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
                grads.setdefault(name, []).append(
                    m.weight.grad.reshape(-1).numpy().copy()
                )
    total = 0.0
    for g in grads.values():
        g = np.stack(g)
        std = g.std(axis=0)
        nz = np.nonzero(std)[0]
        ratio = np.sum(np.abs(g).mean(axis=0)[nz] / std[nz])
        if ratio != 0:
            total += float(np.log(ratio))
    return dict(zico=_finite_or_neginf(total))
