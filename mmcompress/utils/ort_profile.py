"""Where onnxruntime graphs spend their time: per-operator-type kernel times
from onnxruntime's own profiler (the kernels of the optimised graphs, fused
nodes under their fused type), several graphs profiled round robin."""

import bisect
import json
import os
import statistics
import tempfile
from collections import defaultdict
from typing import Dict, Union

from .checks import check_number


def _op_times(events: list, warmup: int, runs: int) -> Dict:
    model_runs = sorted(
        (e for e in events if e.get('name') == 'model_run'), key=lambda e: e['ts']
    )
    if len(model_runs) != warmup + runs:
        raise RuntimeError(
            f'onnxruntime_op_profiles: the profile holds {len(model_runs)} '
            f'model_run events, expected {warmup + runs}'
        )
    model_runs = model_runs[warmup:]
    starts = [e['ts'] for e in model_runs]
    per_run = defaultdict(lambda: [0.0] * runs)
    kernels = defaultdict(int)
    for event in events:
        if event.get('cat') != 'Node' or not event['name'].endswith('_kernel_time'):
            continue
        i = bisect.bisect_right(starts, event['ts']) - 1
        if i < 0 or event['ts'] > starts[i] + model_runs[i]['dur']:
            continue  # a warm-up inference
        op = event['args']['op_name']
        per_run[op][i] += event['dur']
        kernels[op] += 1
    return dict(
        run_ms=statistics.median(e['dur'] for e in model_runs) / 1000,
        op_ms={op: statistics.median(v) / 1000 for op, v in sorted(per_run.items())},
        nodes={op: n // runs for op, n in sorted(kernels.items())},
    )


def onnxruntime_op_profiles(
    models: Dict[str, Union[bytes, str]],
    feed: Dict,
    runs: int = 50,
    warmup: int = 5,
    threads: int = 1,
) -> Dict[str, Dict]:
    """Profile ``runs`` inferences of each ONNX model on onnxruntime's CPU
    provider, the models alternating run by run (so they see the same machine
    load), and sum each inference's kernel time per operator type.

    The sessions use every graph optimisation (onnxruntime's default), so the
    types are those of the graphs that run (e.g. ``SkipLayerNormalization``
    for a residual ``Add`` fused with its ``LayerNormalization``). An
    operator's time is the median over the inferences of its summed kernel
    time (robust to an inference preempted by other work). The profiler adds
    a small cost per node; compare shares, not absolute times, with an
    unprofiled timing.

    Args:
        models (dict): ``{name: serialized model or path}``.
        feed (dict): ``{input name: numpy array}``, the same for every model.
        runs (int): Profiled inferences per model. Defaults to 50.
        warmup (int): Inferences before them, left out. Defaults to 5.
        threads (int): Intra-op threads (inter-op: 1). Defaults to 1.

    Returns:
        dict: ``{name: profile}``, each profile with ``run_ms`` (median wall
        time of one profiled inference, the ``model_run`` event), ``op_ms``
        (``{op type: median kernel ms per inference}``) and ``nodes``
        (``{op type: kernels per inference}``).
    """
    import onnxruntime as ort

    owner = 'onnxruntime_op_profiles'
    check_number('runs', runs, low=1, owner=owner)
    check_number('warmup', warmup, low=0, owner=owner)
    check_number('threads', threads, low=1, owner=owner)
    if not models:
        raise ValueError(f'{owner}: no models given')
    with tempfile.TemporaryDirectory() as folder:
        sessions = {}
        for k, (name, model) in enumerate(models.items()):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(folder, f'ort{k}')
            sessions[name] = ort.InferenceSession(
                model, options, providers=['CPUExecutionProvider']
            )
        for _ in range(warmup + runs):
            for session in sessions.values():
                session.run(None, feed)
        profiles = {}
        for name, session in sessions.items():
            with open(session.end_profiling()) as handle:
                profiles[name] = _op_times(json.load(handle), warmup, runs)
    return profiles
