"""Where an onnxruntime graph spends its time: per-operator-type totals from
onnxruntime's own profiler (the kernels of the optimised graph, fused nodes
under their fused type)."""

import json
import os
import statistics
import tempfile
from collections import Counter, defaultdict
from typing import Dict, Union

from .checks import check_number


def onnxruntime_op_profile(
    model: Union[bytes, str],
    feed: Dict,
    runs: int = 50,
    warmup: int = 5,
    threads: int = 1,
) -> Dict:
    """Profile ``runs`` inferences of an ONNX model on onnxruntime's CPU
    provider and sum the kernel time of each operator type.

    The session uses every graph optimisation (onnxruntime's default), so the
    types are those of the graph that runs (e.g. ``SkipLayerNormalization``
    for a residual ``Add`` fused with its ``LayerNormalization``). The
    profiler adds a small cost per node; compare shares, not absolute times,
    with an unprofiled timing.

    Args:
        model (bytes | str): The serialized model or its path.
        feed (dict): ``{input name: numpy array}``.
        runs (int): Profiled inferences. Defaults to 50.
        warmup (int): Inferences before them, left out of the totals.
            Defaults to 5.
        threads (int): Intra-op threads (inter-op: 1). Defaults to 1.

    Returns:
        dict: ``run_ms`` (median wall time of one profiled inference, the
        ``model_run`` event), ``op_ms`` (``{op type: kernel ms per
        inference}``), ``nodes`` (``{op type: kernels per inference}``).
    """
    import onnxruntime as ort

    check_number('runs', runs, low=1, owner='onnxruntime_op_profile')
    check_number('warmup', warmup, low=0, owner='onnxruntime_op_profile')
    check_number('threads', threads, low=1, owner='onnxruntime_op_profile')
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, 'ort')
        session = ort.InferenceSession(
            model, options, providers=['CPUExecutionProvider']
        )
        for _ in range(warmup + runs):
            session.run(None, feed)
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    model_runs = sorted(
        (e for e in events if e.get('name') == 'model_run'), key=lambda e: e['ts']
    )[warmup:]
    if len(model_runs) != runs:
        raise RuntimeError(
            f'onnxruntime_op_profile: the profile holds {len(model_runs) + warmup} '
            f'model_run events, expected {runs + warmup}'
        )
    spans = [(e['ts'], e['ts'] + e['dur']) for e in model_runs]
    op_us, kernels = defaultdict(float), Counter()
    for event in events:
        if event.get('cat') != 'Node' or not event['name'].endswith('_kernel_time'):
            continue
        if any(begin <= event['ts'] <= end for begin, end in spans):
            op = event['args']['op_name']
            op_us[op] += event['dur']
            kernels[op] += 1
    return dict(
        run_ms=statistics.median(e['dur'] for e in model_runs) / 1000,
        op_ms={op: us / runs / 1000 for op, us in sorted(op_us.items())},
        nodes={op: n // runs for op, n in sorted(kernels.items())},
    )
