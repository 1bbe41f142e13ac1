"""Validation of numeric hyper-parameters, shared by every capability.

``value < 0`` is False for NaN, so a plain comparison lets ``nan`` through and the
run trains on NaN losses or ranges; :func:`check_number` rejects non-finite values
first, with a message naming the parameter, the value and the valid range.
"""

import math
from numbers import Real
from typing import Optional


def _range_text(
    low: Optional[float], high: Optional[float], low_open: bool, high_open: bool
) -> str:
    if high is None:
        return f'> {low:g}' if low_open else f'>= {low:g}'
    if low is None:
        return f'< {high:g}' if high_open else f'<= {high:g}'
    return f'in {"(" if low_open else "["}{low:g}, {high:g}{")" if high_open else "]"}'


def check_number(
    name: str,
    value,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    owner: str = '',
) -> float:
    """Return ``value`` as a float after checking it is a finite number in range.

    Args:
        name (str): The parameter's name, used in the message.
        value: The value given.
        low (float, optional): Lower bound; None for none. Defaults to None.
        high (float, optional): Upper bound; None for none. Defaults to None.
        low_open (bool): Exclude ``low`` itself. Defaults to False.
        high_open (bool): Exclude ``high`` itself. Defaults to False.
        owner (str): Class or function the parameter belongs to, prefixed to
            the message. Defaults to ''.

    Returns:
        float: ``value``.

    Raises:
        TypeError: ``value`` is not a real number (a bool counts as not one).
        ValueError: ``value`` is NaN, infinite or out of range; the message reads
            ``<name> must be <range> (a finite number), got <value>``.
    """
    prefix = f'{owner}: ' if owner else ''
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f'{prefix}{name} must be a number, got {type(value).__name__} {value!r}'
        )
    value = float(value)
    bounded = low is not None or high is not None
    valid = _range_text(low, high, low_open, high_open) if bounded else None
    in_range = math.isfinite(value) and not (
        (low is not None and (value < low or (low_open and value == low)))
        or (high is not None and (value > high or (high_open and value == high)))
    )
    if not in_range:
        what = f'{valid} (a finite number)' if valid else 'a finite number'
        raise ValueError(f'{prefix}{name} must be {what}, got {value}')
    return value
