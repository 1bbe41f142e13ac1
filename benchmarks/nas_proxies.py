"""Rank correlation of training-free proxies with NAS-Bench-201 test accuracy.

Scores a fixed random sample of NB201 architectures (or all 15,625 with --num 15625)
with AZ-NAS and the baselines, caching every architecture's scores in a JSON-lines
file so an interrupted run resumes where it stopped, then prints Kendall tau-b and
Spearman rho against CIFAR-10 / CIFAR-100 / ImageNet16-120 accuracy over the
architectures scored so far (the sample order is a fixed permutation, so any prefix
is itself a uniform random sample).

    nice -n 10 python benchmarks/nas_proxies.py --num 1000 --proxies az_nas synflow \
        --cache work_dirs/nas/nb201_scores.jsonl --json docs/nas/proxies.json \
        --plot docs/nas/az_nas_scatter.png --out docs/nas/README.md

``--workers W`` scores in W processes of ``--threads`` threads each (the scores do
not depend on it: every architecture is scored from torch seed ``--seed``). Every
finished architecture is one line appended and flushed by the main process, so an
interrupted run loses at most the architectures in flight; a line cut short by a
kill is dropped (with a warning) when the cache is read again.

``--speed N`` times instead: the first N architectures of the sample are scored
once in this process (seconds per architecture, median and mean) and once more in
``--workers`` processes (wall seconds / N, the throughput), with the machine load
recorded around both (``machine_load.LoadRecord``); the cache is only read, to
check that the recomputed scores equal the cached ones::

    python benchmarks/nas_proxies.py --speed 40 --workers 2 \
        --cache docs/nas/nb201_scores.jsonl --out docs/nas/README.md
"""

import argparse
import json
import multiprocessing
import os
import os.path as osp
import statistics
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from doc_blocks import write_block  # noqa: E402
from machine_load import LoadRecord, add_load_argument  # noqa: E402

from mmcompress.nas import (  # noqa: E402
    NB201Space,
    NB201Table,
    aggregate_ranks,
    rank_correlation,
)
from mmcompress.nas.benchmark_table import DATASETS  # noqa: E402
from mmcompress.nas.score_cache import PROXY_KEYS, load_score_cache  # noqa: E402
from mmcompress.nas.scoring import count_neginf, score_arch  # noqa: E402


def _drop_partial_line(path):
    """Truncate ``path`` after its last newline (an interrupted write's tail)."""
    if not osp.exists(path):
        return
    with open(path, 'rb+') as f:
        data = f.read()
        keep = data.rfind(b'\n') + 1
        if keep < len(data):
            f.truncate(keep)


_SPACE = None


def _init_worker(threads):
    global _SPACE
    torch.set_num_threads(threads)
    _SPACE = NB201Space()


def score_one(job):
    """Score one architecture with the proxies it lacks (runs in a worker).

    Args:
        job (tuple): ``(benchmark index, arch, proxies to compute, torch seed)``.

    Returns:
        tuple: The index and its record (values and ``seconds/<proxy>``).
    """
    i, arch, proxies, seed = job
    rec = {}
    for p in proxies:
        t0 = time.perf_counter()
        rec.update(score_arch(_SPACE, arch, [p], seed=seed))
        rec[f'seconds/{p}'] = time.perf_counter() - t0
    return i, rec


def _jobs(indices, proxies, cache, table, seed):
    jobs = []
    for i in indices:
        todo = [p for p in proxies if PROXY_KEYS[p][0] not in cache.get(i, {})]
        if todo:
            jobs.append((i, tuple(int(v) for v in table.codes[i]), todo, seed))
    return jobs


def run_jobs(jobs, workers, threads):
    """Yield ``(index, record)`` of every job, in order, from ``workers``
    processes (this process when ``workers`` is 1)."""
    if workers <= 1:
        _init_worker(threads)
        yield from map(score_one, jobs)
        return
    ctx = multiprocessing.get_context('fork')
    with ctx.Pool(workers, _init_worker, (threads,)) as pool:
        yield from pool.imap(score_one, jobs)


def score_missing(order, proxies, cache, path, table, seed, workers=1, threads=1):
    """Score every architecture of ``order`` lacking a proxy; append to the cache."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    _drop_partial_line(path)
    jobs = _jobs(order, proxies, cache, table, seed)
    with open(path, 'a') as f:
        for i, rec in tqdm(
            run_jobs(jobs, workers, threads),
            total=len(jobs),
            desc='scoring',
            mininterval=10,
        ):
            cache.setdefault(i, {}).update(rec)
            f.write(json.dumps(dict(index=int(i), **rec)) + '\n')
            f.flush()


def speed(order, proxies, cache, table, seed, workers, threads, allow_loaded):
    """Time the scoring of the architectures ``order`` (see the module doc).

    Returns:
        dict: Seconds per architecture in one process (median, mean), the
        throughput in ``workers`` processes, the load records, and the number of
        recomputed architectures whose scores differ from the cached ones.
    """
    jobs = _jobs(order, proxies, {}, table, seed)
    load = LoadRecord(allow_loaded, threads=threads)
    per_arch, mismatch, checked = [], [], 0
    keys = ['flops'] + [k for p in proxies for k in PROXY_KEYS[p]]
    for i, rec in run_jobs(jobs, 1, threads):
        per_arch.append(sum(rec[f'seconds/{p}'] for p in proxies))
        if i in cache and all(PROXY_KEYS[p][0] in cache[i] for p in proxies):
            checked += 1
            if any(rec[k] != cache[i][k] for k in keys):
                mismatch.append(i)
    load.stop()
    result = dict(
        num_archs=len(jobs),
        proxies=list(proxies),
        threads=threads,
        one_process=dict(
            median_s=statistics.median(per_arch),
            mean_s=statistics.mean(per_arch),
            load=load.markdown(),
            loaded=load.loaded,
        ),
        cache_checked=checked,
        cache_mismatch=mismatch,
    )
    if workers > 1:
        load = LoadRecord(allow_loaded, threads=workers * threads)
        t0 = time.perf_counter()
        for _ in run_jobs(jobs, workers, threads):
            pass
        wall = time.perf_counter() - t0
        load.stop()
        result['workers'] = dict(
            workers=workers,
            wall_s=wall,
            s_per_arch=wall / len(jobs),
            load=load.markdown(),
            loaded=load.loaded,
        )
    return result


def speed_markdown(result):
    one = result['one_process']
    text = (
        f'{result["num_archs"]} architectures (the first of the sample), proxies '
        f'{", ".join(result["proxies"])}, {result["threads"]} thread(s) per process, '
        'build and FLOPs included. One process: median '
        f'**{one["median_s"]:.3f} s** per architecture (mean {one["mean_s"]:.3f} s). '
        f'{one["load"]}'
    )
    if 'workers' in result:
        w = result['workers']
        text += (
            f'\n\n{w["workers"]} worker processes: {w["wall_s"]:.1f} s wall for the '
            f'{result["num_archs"]}, **{w["s_per_arch"]:.3f} s per architecture** '
            f'(throughput, process start included). {w["load"]}'
        )
    text += (
        f'\n\nRecomputed scores equal to the cached ones: '
        f'{result["cache_checked"] - len(result["cache_mismatch"])} of '
        f'{result["cache_checked"]} cached architectures.'
    )
    return text


def evaluate(order, proxies, cache, table):
    """Correlation table over the architectures of ``order`` scored with all proxies."""
    done = [
        i for i in order if all(PROXY_KEYS[p][0] in cache.get(i, {}) for p in proxies)
    ]
    cols = {'flops': [cache[i]['flops'] for i in done]}
    for p in proxies:
        for k in PROXY_KEYS[p]:
            cols[k] = [cache[i][k] for i in done]
    scores = dict(cols)
    if 'az_nas' in proxies:
        scores['az_nas'] = aggregate_ranks(cols)
    result = dict(num_archs=len(done), neginf=count_neginf(cols), table={})
    for name, s in scores.items():
        result['table'][name] = {
            d: rank_correlation(s, table.acc[done, j]) for j, d in enumerate(DATASETS)
        }
    # accuracy of the architecture each proxy ranks first in the sample
    result['selected'] = {
        name: {
            d: float(table.acc[done[int(np.argmax(s))], j])
            for j, d in enumerate(DATASETS)
        }
        for name, s in scores.items()
    }
    result['best_in_sample'] = {
        d: float(table.acc[done, j].max()) for j, d in enumerate(DATASETS)
    }
    return result, done, scores


def markdown(result):
    lines = [
        '| proxy | ' + ' | '.join(f'{d} KT | {d} SPR' for d in DATASETS) + ' |',
        '|---' * (1 + 2 * len(DATASETS)) + '|',
    ]
    for name, row in result['table'].items():
        vals = ' | '.join(
            f'{row[d]["kendall_tau"]:.3f} | {row[d]["spearman"]:.3f}' for d in DATASETS
        )
        lines.append(f'| {name} | {vals} |')
    return '\n'.join(lines)


def scatter(path, score, acc, title):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from scipy import stats

    fig, ax = plt.subplots(figsize=(5, 4))
    rank = stats.rankdata(score) / len(score)
    ax.scatter(rank, acc, s=4, alpha=0.5)
    ax.set_xlabel('AZ-NAS rank (fraction of the sample, 1 = best)')
    ax.set_ylabel('CIFAR-10 test accuracy (%)')
    ax.set_ylim(max(acc.min(), 80), acc.max() + 0.5)
    hidden = int((acc < 80).sum())
    ax.set_title(
        title + (f'\n({hidden} below 80 % not shown)' if hidden else ''), fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def result_markdown(result):
    """The doc block of an evaluation: sample, table, top-ranked accuracy, -inf."""
    sel = result['selected'].get('az_nas')
    lines = [
        f'{result["num_archs"]} architectures: the first of the permutation with '
        f'`--sample-seed {result["sample_seed"]}`, torch seed {result["seed"]} per '
        f'architecture, proxies {", ".join(result["proxies"])}.',
        '',
        markdown(result),
        '',
        '`-inf` values (NaN mapped, or identity cells for trainability): '
        + ', '.join(f'{k} {v}' for k, v in result['neginf'].items())
        + f' of {result["num_archs"]}. Best CIFAR-10 accuracy in the sample: '
        f'{result["best_in_sample"]["cifar10"]:.2f} %'
        + (
            f'; the architecture AZ-NAS ranks first: {sel["cifar10"]:.2f} %.'
            if sel
            else '.'
        ),
    ]
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=1000, help='archs (15625 = all)')
    parser.add_argument('--sample-seed', type=int, default=0)
    parser.add_argument('--seed', type=int, default=0, help='torch seed per arch')
    parser.add_argument(
        '--proxies', nargs='+', default=['az_nas'], choices=sorted(PROXY_KEYS)
    )
    parser.add_argument('--cache', default='work_dirs/nas/nb201_scores.jsonl')
    parser.add_argument('--eval-only', action='store_true')
    parser.add_argument('--threads', type=int, default=1, help='per process')
    parser.add_argument(
        '--workers', type=int, default=1, help='scoring processes (1 = this one)'
    )
    parser.add_argument(
        '--speed',
        type=int,
        metavar='N',
        help='time the first N architectures instead (cache only read)',
    )
    add_load_argument(parser)
    parser.add_argument('--json', help='write the result table (or timing) here')
    parser.add_argument('--plot', help='write the AZ-NAS rank/accuracy scatter here')
    parser.add_argument(
        '--out',
        help='markdown page: replace its nas-proxies block (nas-proxies-speed '
        'with --speed) by the result',
    )
    args = parser.parse_args()
    if args.workers < 1 or args.threads < 1:
        parser.error('--workers and --threads must be at least 1')
    torch.set_num_threads(args.threads)
    table = NB201Table()
    order = np.random.default_rng(args.sample_seed).permutation(len(table))
    order = [int(i) for i in order[: args.speed or args.num]]
    cache = load_score_cache(args.cache)
    if args.speed:
        result = speed(
            order,
            args.proxies,
            cache,
            table,
            args.seed,
            args.workers,
            args.threads,
            args.allow_loaded,
        )
        print(json.dumps(result, indent=1))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(result, f, indent=1)
        if args.out:
            write_block(args.out, 'nas-proxies-speed', speed_markdown(result))
        return
    if not args.eval_only:
        score_missing(
            order,
            args.proxies,
            cache,
            args.cache,
            table,
            args.seed,
            args.workers,
            args.threads,
        )
    result, done, scores = evaluate(order, args.proxies, cache, table)
    result.update(sample_seed=args.sample_seed, seed=args.seed, proxies=args.proxies)
    # the per-architecture seconds in the cache were taken under whatever load
    # each run had; --speed times on a recorded load instead
    print(f'{result["num_archs"]} architectures; -inf counts {result["neginf"]}')
    print(markdown(result))
    print('accuracy of the top-ranked arch:', json.dumps(result['selected']))
    print('best accuracy in the sample:', json.dumps(result['best_in_sample']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    if args.out:
        write_block(args.out, 'nas-proxies', result_markdown(result))
    if args.plot and 'az_nas' in scores:
        tau = result['table']['az_nas']['cifar10']['kendall_tau']
        scatter(
            args.plot,
            scores['az_nas'],
            table.acc[done, 0],
            f'AZ-NAS on {len(done)} random NB201 archs, CIFAR-10, tau={tau:.3f}',
        )


if __name__ == '__main__':
    main()
