"""The load guard of the timing benchmarks (benchmarks/machine_load.py)."""

import re

import pytest

from ..e2e.runs import load_script

machine_load = load_script('benchmarks', 'machine_load.py')


def _loads(monkeypatch, *values):
    sequence = iter(values)
    monkeypatch.setattr(machine_load.os, 'getloadavg', lambda: next(sequence))


def test_refuses_to_start_on_a_loaded_machine(monkeypatch):
    _loads(monkeypatch, (2.5, 1.0, 0.5))
    with pytest.raises(
        SystemExit, match=r'load average is 2.50 on 2 cores.*--allow-loaded'
    ):
        machine_load.LoadRecord(cores=2)


def test_quiet_run_records_both_ends_without_a_mark(monkeypatch):
    _loads(monkeypatch, (0.4, 0.3, 0.2), (1.1, 0.6, 0.3))
    record = machine_load.LoadRecord(cores=2)
    record.stop()
    assert not record.loaded
    assert record.markdown() == (
        'Load average (1/5/15 min): before 0.40/0.30/0.20, after 1.10/0.60/0.30; '
        '2 cores.'
    )


@pytest.mark.parametrize(
    'before,after,allow',
    [
        ((0.5, 0.5, 0.5), (3.0, 1.0, 0.5), False),
        ((4.0, 2.0, 1.0), (4.0, 2.0, 1.0), True),
    ],
)
def test_loaded_runs_are_marked(monkeypatch, before, after, allow):
    _loads(monkeypatch, before, after)
    record = machine_load.LoadRecord(allow_loaded=allow, cores=2)
    record.stop()
    assert record.loaded
    assert 'Taken on a loaded machine' in record.markdown()


@pytest.mark.parametrize('after,loaded', [(2.9, False), (3.1, True)])
def test_the_run_own_threads_are_not_counted_as_load(monkeypatch, after, loaded):
    """A 2-thread run on 2 cores brings the load to 2 by itself: only other
    work above one core marks it."""
    _loads(monkeypatch, (0.5, 0.5, 0.5), (after, 1.0, 0.5))
    record = machine_load.LoadRecord(cores=2, threads=2)
    record.stop()
    assert record.loaded == loaded


def test_loadavg_is_the_three_proc_fields(monkeypatch):
    """The benchmarks' one-line load (``loadavg_before`` / ``loadavg_after``):
    two decimals, as the first three fields of ``/proc/loadavg``."""
    monkeypatch.setattr(machine_load.os, 'getloadavg', lambda: (1.94, 0.5, 12.0))
    assert machine_load.loadavg() == '1.94 0.50 12.00'


def test_loadavg_has_the_proc_loadavg_format():
    """The real reading has the shape of ``/proc/loadavg``'s first fields."""
    with open('/proc/loadavg') as handle:
        proc = handle.read().split()[:3]
    pattern = r'\d+\.\d\d'
    assert all(re.fullmatch(pattern, v) for v in proc)
    assert re.fullmatch(' '.join([pattern] * 3), machine_load.loadavg())
