"""The machine's load around a timing run, for every benchmark that reports times.

A loaded machine hides fixed costs (a QAT step overhead of 1.34x on a quiet CPU
read 1.15x at load 9), so timing benchmarks record the load average before and
after the run, refuse to start when the machine is already busier than its core
count, and mark their output when the load rose above it during the run.
``--allow-loaded`` runs anyway (the doc then says the numbers were taken loaded).
"""

import argparse
import os
from typing import Optional, Tuple

from mmcompress.utils.timing import interleaved_ms  # noqa: F401 (the benchmarks' import)


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages as one line, as the first three
    fields of ``/proc/loadavg``, e.g. ``'1.94 0.54 0.18'``.

    Returns:
        str: The three load averages with two decimals, space-separated.
    """
    return ' '.join(f'{load:.2f}' for load in os.getloadavg())


def add_load_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--allow-loaded`` to a benchmark's command line.

    Args:
        parser (ArgumentParser): The benchmark's parser.
    """
    parser.add_argument(
        '--allow-loaded',
        action='store_true',
        help='time even when the 1-minute load average is above the core count '
        '(the output is then marked as taken on a loaded machine)',
    )


class LoadRecord:
    """Load averages (1, 5, 15 min) at the start and the end of a timing run.

    Args:
        allow_loaded (bool): Start even when the machine is loaded. Defaults to
            False.
        cores (int, optional): The core count the load is compared with.
            Defaults to ``os.cpu_count()``.
        threads (int): Threads the timed run itself keeps busy. The load at
            the end includes them, so the run counts as loaded when the end
            load exceeds ``cores + threads - 1`` (at one thread: the core
            count), i.e. when other work used more than ``cores - 1`` cores.
            Defaults to 1.

    Raises:
        SystemExit: The 1-minute load at the start is above ``cores`` and
            ``allow_loaded`` is False; the message says how to proceed.
    """

    def __init__(
        self, allow_loaded: bool = False, cores: Optional[int] = None, threads: int = 1
    ) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.threads = threads
        self.before: Tuple[float, float, float] = os.getloadavg()
        self.after: Optional[Tuple[float, float, float]] = None
        if self.before[0] > self.cores and not allow_loaded:
            raise SystemExit(
                f'the 1-minute load average is {self.before[0]:.2f} on '
                f'{self.cores} cores: timings taken now are not comparable '
                f'(fixed costs vanish in the noise). Wait for a quiet machine, '
                f'or pass --allow-loaded to time anyway with the output marked.'
            )

    def stop(self) -> None:
        """Record the load at the end of the run."""
        self.after = os.getloadavg()

    @property
    def loaded(self) -> bool:
        """Whether the 1-minute load was above the core count at the start, or
        above ``cores + threads - 1`` at the end."""
        if self.before[0] > self.cores:
            return True
        return bool(self.after) and self.after[0] > self.cores + self.threads - 1

    def markdown(self) -> str:
        """One paragraph for the doc: the loads and whether the run was quiet.

        Returns:
            str: ``Load average (1/5/15 min): before ..., after ...; N cores.``
            followed by a bold warning when the machine was loaded.
        """

        def fmt(load):
            return '/'.join(f'{value:.2f}' for value in load) if load else 'n/a'

        text = (
            f'Load average (1/5/15 min): before {fmt(self.before)}, after '
            f'{fmt(self.after)}; {self.cores} cores.'
        )
        if self.loaded:
            text += (
                ' **Taken on a loaded machine (other work used more than '
                f'{self.cores - 1} of the {self.cores} cores): the ratios '
                'understate fixed costs; re-run on a quiet machine.**'
            )
        return text
