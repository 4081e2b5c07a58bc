"""Argument checks shared by the runtime's public functions."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1: TypeError for non-integers (bools included), ValueError below 1."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int >= 1, got {value!r} of type {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
