"""Time the per-class GMM fit of BiSMAP: 10 classes x 100k 256-d features, K=8.

Features are synthetic (per class, 8 anisotropic Gaussian clusters with random
means and per-dimension scales), so the fit has real structure to find. Prints
one JSON line: wall and CPU time of the fit (k-means init included; on a
shared machine the CPU time is the one to compare), EM iterations,
classes converged, the load average before and after, and the thread count.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bismap_gmm_fit.py \
        [--per-class 100000] [--classes 10] [--dim 256] [--components 8]
"""

import argparse
import json
import os.path as osp
import sys
import time
from typing import Optional, Sequence

import torch

from mmcompress.adapt import fit_class_gmms

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from machine_load import loadavg  # noqa: E402


def synthetic_features(classes: int, per_class: int, dim: int, seed: int = 0):
    """Per class: 8 Gaussian clusters, random means (scale 3), scales 0.3-1.5."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(classes):
        means = 3 * torch.randn(8, dim, generator=gen)
        scales = 0.3 + 1.2 * torch.rand(8, dim, generator=gen)
        which = torch.randint(0, 8, (per_class,), generator=gen)
        noise = torch.randn(per_class, dim, generator=gen)
        out.append(means[which] + noise * scales[which])
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--per-class', type=int, default=100000)
    parser.add_argument('--classes', type=int, default=10)
    parser.add_argument('--dim', type=int, default=256)
    parser.add_argument('--components', type=int, default=8)
    parser.add_argument('--max-iters', type=int, default=100)
    args = parser.parse_args(argv)
    feats = synthetic_features(args.classes, args.per_class, args.dim)
    before = loadavg()
    start, cpu_start = time.perf_counter(), time.process_time()
    gmm = fit_class_gmms(
        feats, num_components=args.components, max_iters=args.max_iters, device='cpu'
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    print(
        json.dumps(
            dict(
                samples=args.classes * args.per_class,
                dim=args.dim,
                classes=args.classes,
                components=args.components,
                seconds=round(seconds, 1),
                cpu_seconds=round(cpu_seconds, 1),
                em_iterations=gmm.n_iter,
                converged=int(gmm.converged.sum()),
                threads=torch.get_num_threads(),
                loadavg_before=before,
                loadavg_after=loadavg(),
            )
        )
    )


if __name__ == '__main__':
    main()
