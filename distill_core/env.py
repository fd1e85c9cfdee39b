"""Settings read from environment variables, with one rule for what a bad value means."""
from __future__ import annotations

import os

from .errors import UserError

TRUTHY = frozenset({"1", "true", "yes", "on"})


def flag(name: str) -> bool:
    """Whether variable ``name`` is set to 1/true/yes/on (any case)."""
    return os.environ.get(name, "").strip().lower() in TRUTHY


def positive_int(name: str, default: int) -> int:
    """Variable ``name`` as a positive integer, ``default`` when unset; a bad value is an error naming it
    (a cap silently read as 0 or as its default would hide the operator's mistake)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{name} must be a positive integer, got {raw!r}: fix or unset it")
    return value
