"""Helpers for end-to-end runs of real tools on real (or generated-from-real) data.

Config shrinking and the downstream tools' paths are in ``mmcompress.testing``
(shared with benchmarks/).
"""

import glob
import importlib.util
import json
import os
import os.path as osp
import runpy
import socket
import subprocess
import sys
from typing import Dict, List, Sequence

from mmengine.registry import DefaultScope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OUR_TRAIN = osp.join(REPO, 'tools', 'train.py')
OUR_TEST = osp.join(REPO, 'tools', 'test.py')


def load_script(folder: str, script: str):
    """A script of the repository (``tools/``, ``benchmarks/``) as a module.

    Args:
        folder (str): The folder under the repository root.
        script (str): The file name, e.g. ``'psa_cost.py'``.

    Returns:
        module: The executed script, named after its file.
    """
    spec = importlib.util.spec_from_file_location(
        osp.splitext(script)[0], osp.join(REPO, folder, script)
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(
    tool: str, args: Sequence[str], timeout: int = 900, env_extra: Dict[str, str] = None
) -> subprocess.CompletedProcess:
    """Run a tool script in a fresh interpreter from the repo root; fail loudly."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONHASHSEED='0')
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, tool, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f'{tool} {" ".join(args)} exited {proc.returncode}\n'
            f'--- stdout (tail) ---\n{proc.stdout[-4000:]}\n'
            f'--- stderr (tail) ---\n{proc.stderr[-6000:]}'
        )
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no process holds now (for a distributed
    test's rendezvous: fixed ports collide when test workers run at once)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_tool_in_process(tool: str, args: Sequence[str], scope: str) -> None:
    """Run a tool script's ``__main__`` in this interpreter.

    The same script as :func:`run_tool` without a fresh interpreter's import
    cost (most of a tiny run's time). The default scope the run makes current
    is undone afterwards, so later tests see the scope they saw before.

    Args:
        tool (str): Path of the script (e.g. a downstream ``tools/train.py``).
        args (Sequence[str]): Its command-line arguments.
        scope (str): The config's ``default_scope``.
    """
    argv = sys.argv
    sys.argv = [tool, *args]
    try:
        with DefaultScope.overwrite_default_scope(scope):
            runpy.run_path(tool, run_name='__main__')
    finally:
        sys.argv = argv


def scalars(work_dir: str) -> List[dict]:
    """All records of the run(s) in ``work_dir`` (mmengine LocalVisBackend)."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def train_losses(work_dir: str, key: str = 'loss') -> Dict[int, float]:
    """Training loss per iteration (needs ``default_hooks.logger.interval=1``)."""
    return {r['step']: r[key] for r in scalars(work_dir) if key in r and 'lr' in r}


def metrics(work_dir: str, key: str) -> List[float]:
    """Every logged value of an evaluation metric, in order."""
    return [r[key] for r in scalars(work_dir) if key in r]
