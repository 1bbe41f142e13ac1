"""Per-class diagonal Gaussian mixtures fitted by EM, batched over classes.

BiSMAP models the decoder features of every class with ``K`` anisotropic
prototypes: a ``K``-component Gaussian mixture with diagonal covariances, means
initialised by k-means, fitted by EM until the mean log-likelihood improves by
less than ``tol`` (official: K=8, tol 1e-3, at most 100 iterations, variance
floor ``eps`` 1e-6 added in the M-step, unit variances and uniform weights at
the start). Here all classes are fitted at once: the samples are a padded
``(C, N, D)`` tensor, every EM step is a batched matrix product over chunks of
``N`` (so 1M 256-d features fit in memory on a CPU), and a class stops as soon
as it has converged.

Classes with fewer samples than components (documented fallback): a class with
``0 < n < K`` samples is fitted with one component (the mean and per-dimension
variance of its samples, plus ``eps``) and a ``UserWarning`` names it; a class
with no samples gets no model, its log-likelihood is ``-inf`` everywhere (it is
never chosen as a pseudo-label) and a ``UserWarning`` names it too.
"""

import math
import warnings
from typing import Dict, Optional, Sequence

import torch
from mmengine.utils import ProgressBar

from .kmeans import batched_kmeans

LOG_2PI = math.log(2 * math.pi)


class ClassGMM:
    """One diagonal Gaussian mixture per class.

    Args:
        mu (Tensor): ``(C, K, D)`` component means.
        var (Tensor): ``(C, K, D)`` component variances (diagonal).
        log_pi (Tensor): ``(C, K)`` log mixture weights; ``-inf`` marks an
            unused component (and a class without any model).
    """

    def __init__(self, mu: torch.Tensor, var: torch.Tensor, log_pi: torch.Tensor):
        self.mu, self.var, self.log_pi = mu, var, log_pi
        self.num_classes, self.num_components, self.dim = mu.shape

    def to(self, device) -> 'ClassGMM':
        """Move the parameters to ``device``; returns ``self``."""
        self.mu, self.var, self.log_pi = (
            t.to(device) for t in (self.mu, self.var, self.log_pi)
        )
        return self

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The parameters, for ``torch.save``."""
        return dict(mu=self.mu, var=self.var, log_pi=self.log_pi)

    @classmethod
    def from_state_dict(cls, state: Dict[str, torch.Tensor]) -> 'ClassGMM':
        """Rebuild from :meth:`state_dict`."""
        return cls(state['mu'], state['var'], state['log_pi'])

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
        """``log p(x | class c) = logsumexp_k(log N(x | mu_ck, var_ck) + log pi_ck)``.

        Args:
            x (Tensor): ``(N, D)`` features.
            chunk_size (int): Rows scored at once. Defaults to 65536.

        Returns:
            Tensor: ``(N, C)`` log-likelihoods.
        """
        check_features(x, self.dim, 'ClassGMM.log_likelihood')
        x = x.to(self.mu.dtype)
        classes, comps, dim = self.mu.shape
        prec = (1.0 / self.var).reshape(classes * comps, dim)
        mu_prec = (self.mu.reshape(classes * comps, dim)) * prec
        const = (
            (self.mu.reshape(classes * comps, dim) * mu_prec).sum(-1)
            + self.var.log().reshape(classes * comps, dim).sum(-1)
            + dim * LOG_2PI
        )
        out = []
        for chunk in x.split(chunk_size):
            quad = (chunk * chunk) @ prec.T - 2 * chunk @ mu_prec.T + const
            logp = -0.5 * quad.view(-1, classes, comps) + self.log_pi
            out.append(torch.logsumexp(logp, dim=-1))
        return torch.cat(out) if out else x.new_zeros(0, classes)


def check_features(x: torch.Tensor, dim: Optional[int], owner: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a finite ``(N, dim)`` tensor."""
    if not torch.is_tensor(x) or x.dim() != 2:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f'{owner}: features must be an (N, D) tensor, got {shape}.')
    if dim is not None and x.shape[1] != dim:
        raise ValueError(
            f'{owner}: features have {x.shape[1]} channels, the model has {dim}.'
        )
    bad = (~torch.isfinite(x)).any(dim=1)
    if bad.any():
        raise ValueError(
            f'{owner}: {int(bad.sum())} of {x.shape[0]} feature vectors contain '
            'NaN or inf (check the model output, e.g. an fp16 overflow); drop them '
            'before fitting or scoring.'
        )


def _batched_log_prob(x, x2, mu, var, log_pi):
    """``(C, n, K)`` weighted component log-densities of ``(C, n, D)`` samples."""
    prec = 1.0 / var
    quad = (
        torch.bmm(x2, prec.transpose(1, 2))
        - 2 * torch.bmm(x, (mu * prec).transpose(1, 2))
        + (mu * mu * prec).sum(-1).unsqueeze(1)
    )
    norm = var.log().sum(-1) + mu.shape[-1] * LOG_2PI
    return log_pi.unsqueeze(1) - 0.5 * (quad + norm.unsqueeze(1))


def _em_pass(x, valid, classes, mu, var, log_pi, chunk_size):
    """One E-step over all samples of ``classes``, with the M-step's sums.

    Returns:
        tuple: mean log-likelihood ``(c,)``, ``Nk (c, K)``, ``sum resp*x`` and
        ``sum resp*x^2`` ``(c, K, D)`` for the selected classes.
    """
    sel_mu, sel_var, sel_pi = mu[classes], var[classes], log_pi[classes]
    comps, dim = mu.shape[1], mu.shape[2]
    count = torch.zeros(len(classes), comps, dtype=x.dtype, device=x.device)
    s1 = torch.zeros(len(classes), comps, dim, dtype=x.dtype, device=x.device)
    s2 = torch.zeros_like(s1)
    ll = torch.zeros(len(classes), dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[1], chunk_size):
        xc = x[classes, start : start + chunk_size]
        vc = valid[classes, start : start + chunk_size].to(x.dtype)
        x2 = xc * xc
        logp = _batched_log_prob(xc, x2, sel_mu, sel_var, sel_pi)
        norm = torch.logsumexp(logp, dim=-1)
        resp = torch.exp(logp - norm.unsqueeze(-1)) * vc.unsqueeze(-1)
        ll += (norm * vc).sum(1)
        count += resp.sum(1)
        rt = resp.transpose(1, 2)
        s1 += torch.bmm(rt, xc)
        s2 += torch.bmm(rt, x2)
    return ll / valid[classes].sum(1).to(x.dtype), count, s1, s2


def _pad(features: Sequence[torch.Tensor], dim: int, device, dtype):
    """Pack per-class feature sets into ``(C, N, D)`` plus a validity mask."""
    size = max(max((len(f) for f in features), default=0), 1)
    x = torch.zeros(len(features), size, dim, dtype=dtype, device=device)
    valid = torch.zeros(len(features), size, dtype=torch.bool, device=device)
    for c, feats in enumerate(features):
        x[c, : len(feats)] = feats.to(device=device, dtype=dtype)
        valid[c, : len(feats)] = True
    return x, valid


def _init_subset(features, classes, limit, dim, device, seed):
    """At most ``limit`` random samples of each of ``classes``, padded."""
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in classes:
        feats = features[c]
        if limit is not None and len(feats) > limit:
            feats = feats[torch.randperm(len(feats), generator=gen)[:limit]]
        picked.append(feats)
    return _pad(picked, dim, device, torch.float32)


def _check_fit_args(features, num_components, tol, max_iters):
    if isinstance(num_components, bool) or not isinstance(num_components, int):
        raise TypeError(f'num_components must be an int >= 1, got {num_components!r}.')
    if num_components < 1:
        raise ValueError(
            f'num_components (K) must be >= 1, got {num_components}: K=1 is the '
            'single-prototype baseline, the official BiSMAP uses K=8.'
        )
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f'max_iters must be an int >= 1, got {max_iters!r}.')
    if not tol >= 0:
        raise ValueError(f'tol must be >= 0, got {tol}.')
    if len(features) == 0:
        raise ValueError('fit_class_gmms: got no classes (an empty feature list).')
    dims = {f.shape[1] for f in features if torch.is_tensor(f) and f.dim() == 2}
    for c, feats in enumerate(features):
        check_features(feats, None, f'fit_class_gmms (class {c})')
    if len(dims) != 1:
        raise ValueError(
            f'fit_class_gmms: all classes need the same feature size, got {dims}.'
        )
    return dims.pop()


def _warn_small_classes(counts, num_components):
    empty = [c for c, n in enumerate(counts) if n == 0]
    small = [(c, n) for c, n in enumerate(counts) if 0 < n < num_components]
    if empty:
        warnings.warn(
            f'fit_class_gmms: classes {empty} have no samples: they get no model '
            '(log-likelihood -inf, never pseudo-labelled). Sample more source '
            'pixels of them (raise their sampling ratio).',
            stacklevel=3,
        )
    if small:
        text = ', '.join(f'class {c}: {n}' for c, n in small)
        warnings.warn(
            f'fit_class_gmms: fewer samples than num_components={num_components} '
            f'({text}); these classes are fitted with 1 component (mean and '
            'variance of their samples).',
            stacklevel=3,
        )


@torch.no_grad()
def fit_class_gmms(
    features: Sequence[torch.Tensor],
    num_components: int = 8,
    tol: float = 1e-3,
    max_iters: int = 100,
    eps: float = 1e-6,
    kmeans_iters: int = 20,
    kmeans_init: int = 3,
    kmeans_samples: Optional[int] = 20000,
    chunk_size: int = 32768,
    seed: int = 0,
    device=None,
    progress: bool = False,
) -> ClassGMM:
    """Fit one ``K``-component diagonal GMM per class by EM.

    Args:
        features (Sequence[Tensor]): ``C`` tensors ``(n_c, D)``, class ``c``'s
            features (sampled with :func:`sample_class_features`).
        num_components (int): ``K``. Defaults to 8 (official).
        tol (float): Stop a class when its mean log-likelihood improves by at most
            ``tol``; its parameters then revert to the previous step, as in the
            official code. Defaults to 1e-3.
        max_iters (int): Most EM iterations. Defaults to 100.
        eps (float): Variance floor added in the M-step. Defaults to 1e-6.
        kmeans_iters (int): Lloyd iterations of the mean initialisation.
        kmeans_init (int): Random k-means starts (best kept). Defaults to 3.
        kmeans_samples (int, optional): Run the k-means initialisation on at most
            this many random samples per class (EM then uses all). None: all (as
            the official code). Defaults to 20000.
        chunk_size (int): Samples per class per batched step. Defaults to 32768.
        seed (int): Seed of the k-means starts. Defaults to 0.
        device (str | torch.device, optional): Where to fit; None: the device of
            the first class's features.
        progress (bool): Show a progress bar over the EM iterations.

    Returns:
        ClassGMM: The mixtures (on ``device``); ``n_iter`` holds the iterations
        run and ``converged`` the per-class convergence flags.
    """
    dim = _check_fit_args(features, num_components, tol, max_iters)
    device = device or features[0].device
    counts = [len(f) for f in features]
    _warn_small_classes(counts, num_components)
    x, valid = _pad(features, dim, device, torch.float32)
    num_classes, k = len(features), num_components
    mu = torch.zeros(num_classes, k, dim, device=device)
    var = torch.ones(num_classes, k, dim, device=device)
    active = torch.zeros(num_classes, k, dtype=torch.bool, device=device)
    full = [c for c, n in enumerate(counts) if n >= k]
    if full:
        idx = torch.tensor(full, device=device)
        xs, vs = _init_subset(features, full, kmeans_samples, dim, device, seed)
        mu[idx] = batched_kmeans(xs, k, vs, kmeans_iters, n_init=kmeans_init, seed=seed)
        active[idx] = True
    for c, n in enumerate(counts):
        if 0 < n < k:
            mu[c, 0] = features[c].to(device, torch.float32).mean(0)
            active[c, 0] = True
    num_active = active.sum(-1, keepdim=True).clamp_min(1).float()
    log_pi = torch.where(active, -num_active.log(), -math.inf)
    todo = [c for c, n in enumerate(counts) if n > 0]
    prev = (mu.clone(), var.clone(), log_pi.clone())
    prev_ll = torch.full((num_classes,), -math.inf, device=device)
    converged = torch.zeros(num_classes, dtype=torch.bool)
    bar = ProgressBar(max_iters) if progress else None
    n_iter = 0
    while todo and n_iter < max_iters:
        n_iter += 1
        cls = torch.tensor(todo, device=device)
        ll, count, s1, s2 = _em_pass(x, valid, cls, mu, var, log_pi, chunk_size)
        done = (ll - prev_ll[cls]) <= tol
        for c in cls[done].tolist():  # official: revert to the previous step
            mu[c], var[c], log_pi[c] = prev[0][c], prev[1][c], prev[2][c]
            converged[c] = True
        keep = cls[~done]
        prev_ll[cls] = ll
        for store, cur in zip(prev, (mu, var, log_pi)):
            store[keep] = cur[keep]
        new_mu = s1 / (count + eps).unsqueeze(-1)
        new_var = (s2 / (count + eps).unsqueeze(-1) - new_mu**2 + eps).clamp_min(eps)
        ok = (active[cls] & (count > 1e-3)).unsqueeze(-1) & ~done.view(-1, 1, 1)
        mu[cls] = torch.where(ok, new_mu, mu[cls])
        var[cls] = torch.where(ok, new_var, var[cls])
        n = valid[cls].sum(1, keepdim=True).to(count.dtype)
        new_pi = torch.where(active[cls], (count + eps) / n, 0.0).log()
        log_pi[cls] = torch.where(done.view(-1, 1), log_pi[cls], new_pi)
        todo = keep.tolist()
        if bar is not None:
            bar.update()
    if bar is not None and n_iter < max_iters:
        bar.file.write('\n')
    gmm = ClassGMM(mu, var, log_pi)
    gmm.n_iter, gmm.converged = n_iter, converged
    return gmm
