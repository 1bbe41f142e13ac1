"""Round-robin timing, shared by the benchmarks and the latency tables."""

import statistics
import time
from typing import Callable, Dict


def interleaved_ms(
    fns: Dict[str, Callable], iters: int, warmup: int
) -> Dict[str, float]:
    """Median milliseconds of each callable, run alternately (round robin).

    Args:
        fns (dict[str, Callable]): The timed calls, by name.
        iters (int): Timed rounds.
        warmup (int): Untimed rounds first.

    Returns:
        dict[str, float]: The median of each call's timed rounds, in ms.
    """
    times = {key: [] for key in fns}
    for i in range(warmup + iters):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[key].append(time.perf_counter() - start)
    return {key: 1000 * statistics.median(v) for key, v in times.items()}
