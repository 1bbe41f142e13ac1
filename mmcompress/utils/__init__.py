"""Cross-cutting helpers: stack compatibility and checkpoint loading."""

import importlib.util


def has_package(name: str) -> bool:
    """Whether a top-level package (e.g. ``'mmdet'``) is installed.

    Args:
        name (str): Importable package name.

    Returns:
        bool: True if ``import name`` can find it.
    """
    return importlib.util.find_spec(name) is not None
