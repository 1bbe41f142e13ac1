"""Build-once loading of the optional C++ CPU kernels (quantizers, PSA).

Each kernel module keeps its own ``state`` dict and lock; :func:`build_once`
fills the dict the first time the kernels are needed: ``'ops'`` (what the build
returned, e.g. a ``torch.ops`` namespace) or ``'error'`` (why it failed, after
one warning); the eager code runs where it failed.
"""

import threading
import warnings
from typing import Callable, Optional


def build_once(
    state: dict,
    lock: threading.Lock,
    build: Callable[[], object],
    what: str,
    fallback: str,
    warn: bool = True,
) -> Optional[object]:
    """Run ``build`` once per process and remember its result or its failure.

    Args:
        state (dict): The kernel module's state: ``'ops'`` or ``'error'`` once
            decided (read without the lock afterwards).
        lock (threading.Lock): Serialises the first build.
        build (Callable): Compiles and loads the extension; returns the ops.
        what (str): What failed to build, e.g. ``'fused quantizer kernels'``.
        fallback (str): What runs instead, one sentence for the warning.
        warn (bool): Warn when the build fails. Defaults to True.

    Returns:
        The ops ``build`` returned, or None when it failed (the reason is
        ``state['error']``).
    """
    if 'ops' in state or 'error' in state:  # no lock once decided
        return state.get('ops')
    with lock:
        if 'ops' not in state and 'error' not in state:
            try:
                state['ops'] = build()
            except Exception as error:  # noqa: BLE001 (any build failure)
                state['error'] = f'{type(error).__name__}: {error}'.strip()
                if warn:
                    warnings.warn(
                        f'mmcompress: the {what} could not be built '
                        f'({state["error"][:300]}); {fallback} '
                        'Install a C++ compiler and ninja to use them.',
                        RuntimeWarning,
                        stacklevel=4,
                    )
    return state.get('ops')
