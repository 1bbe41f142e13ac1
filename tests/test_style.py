"""The repository passes ruff's lint and format checks (settings: pyproject.toml).

Fix a failure with ``ruff check --fix <file>`` / ``ruff format <file>`` (ruff is
installed by tools/setup_env.sh at the version pinned there).
"""

import importlib.util
import subprocess
import sys

import pytest

from .e2e.runs import REPO

PATHS = ['mmcompress', 'tools', 'benchmarks', 'tests', 'configs']


def _ruff(*args):
    if importlib.util.find_spec('ruff') is None:
        pytest.fail(
            'ruff is not installed in this environment: run '
            'bash tools/setup_env.sh (or pip install the ruff version it pins)'
        )
    return subprocess.run(
        [sys.executable, '-m', 'ruff', *args, *PATHS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_check_passes():
    proc = _ruff('check', '--no-cache', '--output-format', 'concise')
    assert proc.returncode == 0, (
        f'ruff check found problems (fix them or run `ruff check --fix`):\n'
        f'{proc.stdout}{proc.stderr}'
    )


def test_ruff_format_is_applied():
    proc = _ruff('format', '--check', '--no-cache')
    assert proc.returncode == 0, (
        f'files not formatted (run `ruff format <file>`):\n{proc.stdout}{proc.stderr}'
    )
