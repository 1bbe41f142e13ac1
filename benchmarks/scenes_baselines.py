"""Train the scene baselines with the stock downstream tools and tabulate them.

For every baseline config (student and teacher per downstream) this runs the
downstream package's own ``tools/train.py`` (``--jobs`` at a time, one thread
each), measures the wall-clock training time, counts the model parameters and
reads the final validation metric from the run's ``scalars.json``. Each run
leaves ``benchmark.json`` in its work dir; the markdown table is assembled
from all of them, so separate invocations (``--only``) add up.

The runs go to ``work_dirs/<config name>/`` by default: the distillation
teachers and quantization float checkpoints named by the configs in
``configs/distill`` and ``configs/quant`` are exactly these files.

Usage (from the repository root, data generated first)::

    python tools/generate_scenes.py --task det --split bench
    python tools/generate_scenes.py --task seg --split bench
    python tools/generate_scenes.py --task pose --split bench
    python benchmarks/scenes_baselines.py --jobs 2 --out docs/scenes_baselines.md
"""

import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# (downstream package, config relative to configs/baselines, metric key, role)
BASELINES: List[Tuple[str, str, str, str]] = [
    ('mmdet', 'mmdet/retinanet_r18-w16_scenes.py', 'coco/bbox_mAP', 'student'),
    ('mmdet', 'mmdet/retinanet_r18-w32_scenes_teacher.py', 'coco/bbox_mAP', 'teacher'),
    ('mmdet', 'mmdet/gfl_r18-w16_scenes.py', 'coco/bbox_mAP', 'student'),
    ('mmdet', 'mmdet/gfl_r18-w32_scenes_teacher.py', 'coco/bbox_mAP', 'teacher'),
    ('mmseg', 'mmseg/fcn_r18-w16_scenes.py', 'mIoU', 'student'),
    ('mmseg', 'mmseg/fcn_r18-w32_scenes_teacher.py', 'mIoU', 'teacher'),
    ('mmpose', 'mmpose/topdown_heatmap_r18-w16_scenes.py', 'coco/AP', 'student'),
    (
        'mmpose',
        'mmpose/topdown_heatmap_r18-w32_scenes_teacher.py',
        'coco/AP',
        'teacher',
    ),
]


# second metric shown next to the main one
SECONDARY = {
    'coco/bbox_mAP': 'coco/bbox_mAP_50',
    'mIoU': 'aAcc',
    'coco/AP': 'coco/AP .5',
}


def count_parameters(config_path: str) -> int:
    """Build a config's model in its downstream scope and count parameters.

    Args:
        config_path (str): Path of a downstream config.

    Returns:
        int: Number of parameters of the built model.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmcompress  # noqa: F401  (registers the scene datasets)

    config = Config.fromfile(config_path)
    init_default_scope(config.default_scope)
    model = MODELS.build(config.model)
    return sum(parameter.numel() for parameter in model.parameters())


def final_metrics(work_dir: str) -> Dict[str, float]:
    """The last evaluation record of a run's ``scalars.json``.

    Args:
        work_dir (str): The ``--work-dir`` given to ``tools/train.py``.

    Returns:
        dict: Metric name to value of the last record without a loss.
    """
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(
            f'No vis_data/scalars.json under {work_dir}; did the training finish?'
        )
    with open(files[-1]) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    evaluations = [record for record in records if 'loss' not in record]
    if not evaluations:
        raise ValueError(f'{files[-1]} holds no evaluation record.')
    return evaluations[-1]


def metric_percent(metric_key: str, value: float) -> float:
    """A downstream metric in percent (mmseg reports mIoU in % already).

    Args:
        metric_key (str): Key in ``scalars.json``.
        value (float): Its value.

    Returns:
        float: The value in percent.
    """
    return value if metric_key in ('mIoU', 'aAcc', 'mAcc') else 100.0 * value


def train(
    package: str, config_path: str, work_dir: str, options: Sequence[str] = ()
) -> float:
    """Run the stock ``tools/train.py`` of ``package``; return seconds taken.

    Args:
        package (str): Downstream package (``mmdet``, ``mmseg``...).
        config_path (str): Config to train.
        work_dir (str): ``--work-dir`` of the run; its log goes to
            ``<work_dir>/train.log``.
        options (Sequence[str]): ``--cfg-options`` items (``key=value``).

    Returns:
        float: Wall-clock seconds of the run.
    """
    from mmcompress.testing import stock_tool

    tool = stock_tool(package)
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    command = [sys.executable, tool, config_path, '--work-dir', work_dir]
    if options:
        command += ['--cfg-options', *options]
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()
    with open(osp.join(work_dir, 'train.log'), 'w') as log:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
    if result.returncode != 0:
        raise RuntimeError(
            f'{" ".join(command)} exited {result.returncode}; '
            f'see {osp.join(work_dir, "train.log")}'
        )
    return time.perf_counter() - start


def run_in_pool(jobs: int, function, items: Sequence) -> List:
    """``function(item)`` for every item, ``jobs`` at a time, in order.

    Args:
        jobs (int): Concurrent runs (each run is its own process).
        function (callable): Called once per item.
        items (Sequence): The items.

    Returns:
        list: The results in the order of ``items``.
    """
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(function, items))


def run_baseline(entry: Tuple[str, str, str, str], work_root: str, seed: int) -> dict:
    """Train one baseline and write its ``benchmark.json``.

    Args:
        entry (tuple): One row of ``BASELINES``.
        work_root (str): Parent of the run's work dir.
        seed (int): ``randomness.seed`` of the run.

    Returns:
        dict: The record written to ``benchmark.json``.
    """
    package, config, metric_key, role = entry
    config_path = osp.join(REPO_ROOT, 'configs', 'baselines', config)
    work_dir = osp.join(work_root, osp.basename(config)[:-3])
    seconds = train(package, config_path, work_dir, [f'randomness.seed={seed}'])
    metrics = final_metrics(work_dir)
    record = dict(
        package=package,
        config=config,
        role=role,
        metric=metric_key,
        value=metric_percent(metric_key, metrics[metric_key]),
        metrics=metrics,
        minutes=seconds / 60,
        params_m=count_parameters(config_path) / 1e6,
        seed=seed,
    )
    with open(osp.join(work_dir, 'benchmark.json'), 'w') as handle:
        json.dump(record, handle, indent=1)
    print(json.dumps(record), flush=True)
    return record


def baseline_record(config: str) -> Optional[dict]:
    """The ``benchmark.json`` of a finished baseline run, if there is one.

    Args:
        config (str): The baseline config, relative to ``configs/`` or to
            the repository (``configs/baselines/...``), or its file name.

    Returns:
        dict | None: The record :func:`run_baseline` wrote into
        ``work_dirs/<config name>/``.
    """
    path = osp.join(REPO_ROOT, 'work_dirs', osp.basename(config)[:-3], 'benchmark.json')
    if not osp.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def markdown_table(records: List[dict]) -> str:
    """The results table of baseline records, in ``BASELINES`` order."""
    order = [config for _, config, _, _ in BASELINES]
    rows = [
        '| downstream | config | role | metric | value | second metric | '
        'train min | params (M) | seed |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for record in sorted(records, key=lambda r: order.index(r['config'])):
        second = SECONDARY[record['metric']]
        second_value = metric_percent(second, record['metrics'][second])
        rows.append(
            f'| {record["package"]} | `{record["config"]}` | '
            f'{record["role"]} | {record["metric"]} | '
            f'{record["value"]:.1f} | {second} {second_value:.1f} | '
            f'{record["minutes"]:.1f} | {record["params_m"]:.2f} | '
            f'{record["seed"]} |'
        )
    return '\n'.join(rows)


def collect(work_root: str) -> List[dict]:
    """Every baseline ``benchmark.json`` under ``work_root``."""
    records = []
    for _, config, _, _ in BASELINES:
        path = osp.join(work_root, osp.basename(config)[:-3], 'benchmark.json')
        if osp.isfile(path):
            with open(path) as handle:
                records.append(json.load(handle))
    return records


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Train the selected baselines and print/write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs')
    parser.add_argument('--out', help='markdown file for the table')
    parser.add_argument(
        '--only',
        nargs='+',
        default=None,
        help='substrings of the configs to run (default: all)',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--jobs', type=int, default=1, help='runs at a time (one thread each)'
    )
    parser.add_argument(
        '--table-only',
        action='store_true',
        help='only assemble the table from finished runs',
    )
    args = parser.parse_args(argv)
    if not args.table_only:
        selected = [
            entry
            for entry in BASELINES
            if not args.only or any(part in entry[1] for part in args.only)
        ]
        run_in_pool(
            args.jobs,
            lambda entry: run_baseline(entry, args.work_dir, args.seed),
            selected,
        )
    table = markdown_table(collect(args.work_dir))
    print(table)
    if args.out:
        with open(args.out, 'w') as handle:
            handle.write(table + '\n')


if __name__ == '__main__':
    main()
